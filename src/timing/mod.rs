//! The pure timing engine: given campaigns, resolved members (with their send
//! history) and a window `[from, to)`, every due send with its instant, local time
//! and message variant. Never reads the wall clock. Built by issue 4.

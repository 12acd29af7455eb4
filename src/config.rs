//! Daemon configuration (`almanac.toml`): database, campaigns directory, listen
//! address, channels, global defaults. Owned by the daemon work (issue 7); each
//! domain module owns the type of its own section.

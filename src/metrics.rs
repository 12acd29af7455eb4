//! The one Prometheus registry and every metric the daemon exports. Built by
//! issue 7; other modules add their series here.

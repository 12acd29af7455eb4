//! almanac: geo-targeted, climate-timed, dialect-localized pushes to CRM members.
//!
//! The library holds everything; `src/main.rs` only parses the command line and
//! calls [`cli::main`]. See `ARCHITECTURE.md` for the map of modules and the data flow.
#![forbid(unsafe_code)]

pub mod campaign;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod duration;
pub mod geo;
pub mod health;
pub mod http;
pub mod logging;
pub mod members;
pub mod metrics;
pub mod redact;
pub mod secret;
pub mod store;
pub mod timing;

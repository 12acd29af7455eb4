//! Campaign files: the TOML model, validation with spans, directory loading and
//! reload diffing.
//!
//! `model` holds the validated domain types every other module consumes. The raw
//! serde model, validation and diagnostics are built by the campaign-language work
//! (issue 2); until then `load_dir` is a placeholder.

pub mod model;

pub use model::*;

//! modelgate: stable, meaningful names for LLM models, served by an OpenAI-compatible
//! gateway and managed as Kubernetes custom resources.

pub mod compiler;
pub mod controller;
pub mod crd;
/// Property checks behind the fuzz targets in `fuzz/`; also replayed by `cargo test`.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod import;
pub mod keys;
pub mod kubernetes;
pub mod llm;
pub mod manifest;
pub mod memory;
pub mod report;
pub mod secret;
pub mod signal;
pub mod validate;

//! The properties the fuzz targets in `fuzz/` check: one function per target, bytes in, a
//! panic when a property breaks. The targets are one line each, and `cargo test` replays every
//! committed input (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through the same
//! functions, so a crash found by fuzzing becomes a regression test by committing its input.
//!
//! Compiled only for tests and for the fuzz crate (feature `fuzzing`); panicking is how these
//! functions report, so they assert freely.

mod compiler;
mod manifest;
mod request;
mod usage;

pub use compiler::compiler_graph;
pub use manifest::manifest_yaml;
pub use request::request_body;
pub use usage::usage_metering;

/// A property check: panics when `data` breaks a property.
pub type Check = fn(&[u8]);

/// Every fuzz target by name (its `fuzz/fuzz_targets/<name>.rs` and corpus directories).
pub const TARGETS: &[(&str, Check)] = &[
    ("request_body", request_body),
    ("usage_metering", usage_metering),
    ("manifest_yaml", manifest_yaml),
    ("compiler_graph", compiler_graph),
];

#[cfg(test)]
mod tests;

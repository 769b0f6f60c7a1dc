//! The properties the fuzz targets in `fuzz/` check: one function per target, bytes in, a
//! panic when a property breaks. The targets are one line each, and `cargo test` replays every
//! committed input (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through the same
//! functions, so a crash found by fuzzing becomes a regression test by committing its input.
//!
//! Compiled only for tests and for the fuzz crate (feature `fuzzing`); panicking is how these
//! functions report, so they assert freely.

mod compiler;
mod h1;
mod h1_request;
mod keys;
mod manifest;
mod request;
mod sse;
mod surface;
mod usage;
mod wire;

pub use compiler::compiler_graph;
pub use h1::h1_response;
pub use h1_request::h1_request;
pub use keys::api_key;
pub use manifest::manifest_yaml;
pub use request::request_body;
pub use sse::sse_frames;
pub use surface::surface_request;
pub use usage::usage_metering;
pub use wire::{wire_answer, wire_stream};

/// `bytes` cut at random places (1 to 64 bytes a piece), the same cuts for the same seed.
pub(crate) fn random_cuts(seed: u8, bytes: &[u8]) -> Vec<&[u8]> {
    let mut rng = fastrand::Rng::with_seed(u64::from(seed) ^ ((bytes.len() as u64) << 8));
    let mut pieces = Vec::new();
    let mut left = bytes;
    while !left.is_empty() {
        let (piece, tail) = left.split_at(rng.usize(1..=left.len().min(64)));
        pieces.push(piece);
        left = tail;
    }
    pieces
}

/// Asserts `read` gives the same for `bytes` in one piece, one byte at a time and cut at
/// random places (from `seed`); returns what it gave.
pub(crate) fn same_however_cut<T: PartialEq + std::fmt::Debug>(
    seed: u8,
    bytes: &[u8],
    read: impl Fn(&[&[u8]]) -> T,
) -> T {
    let whole = read(&[bytes]);
    assert_eq!(
        whole,
        read(&bytes.chunks(1).collect::<Vec<_>>()),
        "one piece and single bytes disagree"
    );
    assert_eq!(
        whole,
        read(&random_cuts(seed, bytes)),
        "one piece and random cuts disagree"
    );
    whole
}

/// A property check: panics when `data` breaks a property.
pub type Check = fn(&[u8]);

/// Every fuzz target by name (its `fuzz/fuzz_targets/<name>.rs` and corpus directories).
pub const TARGETS: &[(&str, Check)] = &[
    ("request_body", request_body),
    ("usage_metering", usage_metering),
    ("manifest_yaml", manifest_yaml),
    ("compiler_graph", compiler_graph),
    ("wire_stream", wire_stream),
    ("wire_answer", wire_answer),
    ("sse_frames", sse_frames),
    ("surface_request", surface_request),
    ("api_key", api_key),
    ("h1_response", h1_response),
    ("h1_request", h1_request),
];

#[cfg(test)]
mod tests;

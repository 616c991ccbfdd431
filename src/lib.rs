//! Gradients: fine-tuning tournaments on Kubernetes or on one machine.
//!
//! The pure core is [`mechanism`] (the white paper's rules). Everything that touches files,
//! processes or the Kubernetes API lives at the edges.

pub mod api;
pub mod audit;
pub mod chain;
pub mod crdgen;
pub mod dataset;
pub mod gpu;
pub mod isolation;
pub mod local;
pub mod mechanism;
pub mod operator;
pub mod seal;
pub mod storage;
pub mod synthetic;
pub mod tournament;
pub mod workdirs;
pub mod workloads;

/// The checkout under test. Cargo sets `CARGO_MANIFEST_DIR` when it runs a test as well as when
/// it compiles one, and only the first is current: clones sharing a target directory share test
/// binaries (cargo does not rebuild one for a checkout at another path), and the compiled-in
/// path is that of whichever clone built it.
#[cfg(test)]
pub(crate) fn checkout() -> std::path::PathBuf {
    use std::path::PathBuf;
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

//! Synthetic tasks (white paper §3.2): a validator supplements organic work with tasks drawn
//! from a catalogue of base models and datasets by the task-type mix.
//!
//! - [`draw`]: draw `i` of a source, a pure function of (catalogue, mix, seed, i), and the
//!   catalogue's rules;
//! - [`plan`]: one reconcile of a `TaskSource` (what to create, the status, when to pause);
//! - [`file`]: `gradients synthesize`, the same draw from a file, without a cluster.

pub mod draw;
pub mod file;
pub mod plan;

#[cfg(test)]
mod draw_tests;
#[cfg(test)]
mod plan_tests;

pub use draw::{Draw, draw, task_name};

/// Why a source cannot draw. Every message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    NothingToDraw(String),
}

impl SourceError {
    /// A stable PascalCase name (condition reason, Event reason).
    pub fn category(&self) -> &'static str {
        match self {
            SourceError::Invalid { .. } => "InvalidCatalog",
            SourceError::NothingToDraw(_) => "NothingToDraw",
        }
    }
}

/// Labels of a synthetic Task: which source drew it, and its draw index.
pub mod labels {
    pub const SOURCE: &str = "gradients.io/task-source";
    pub const INDEX: &str = "gradients.io/draw-index";
}

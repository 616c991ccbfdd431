//! The local executor behind `gradients run TASK.yaml`: the tournament of
//! [`crate::tournament`] on one machine, with child processes as workloads and a run
//! directory as state.
//!
//! - [`manifest`] and [`validate`]: the task file (a `Task` manifest) and every check made
//!   before a process starts;
//! - [`crate::dataset`] (shared with the operator): reading datasets and writing the split;
//! - [`executor`]: the observe → decide → apply loop; [`process`] its children (process
//!   groups, deadlines), [`workload`] the trainer/evaluator command lines and results;
//! - [`preflight`]: the Python environment, base model and GPUs, checked before any workload;
//!   [`devices`]: which GPUs each parallel workload gets, and what it used;
//! - [`rundir`], [`store`], [`fsio`]: crash-safe state (run directory, leaderboard store);
//! - [`progress`], [`report`], [`page`]: what the user sees (live view, table, HTML report).

pub mod cli;
pub mod devices;
pub mod executor;
pub mod fsio;
pub mod manifest;
pub mod page;
pub mod preflight;
pub mod process;
pub mod progress;
pub mod report;
pub mod rundir;
pub mod store;
pub mod validate;
pub mod workload;

pub use executor::{Options, RunError, run};
pub use report::{RunReport, table};

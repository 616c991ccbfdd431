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

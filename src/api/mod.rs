//! The custom resources (`gradients.io/v1alpha1`) and the task spec they share with task files.

pub mod conditions;
pub mod evaluation;
pub mod leaderboard;
pub mod miner;
pub mod submission;
pub mod task;
pub mod task_source;

pub use evaluation::{Evaluation, EvaluationSpec, EvaluationStatus};
pub use leaderboard::{Leaderboard, LeaderboardSpec, LeaderboardStatus};
pub use miner::{Miner, MinerSpec, MinerStatus};
pub use submission::{MinerSubmission, MinerSubmissionSpec, MinerSubmissionStatus};
pub use task::{Task, TaskSpec, TaskStatus};
pub use task_source::{TaskSource, TaskSourceSpec, TaskSourceStatus};

/// The API group of every custom resource here.
pub const GROUP: &str = "gradients.io";

/// Every CRD, in the order `gradients crdgen` writes them.
pub fn crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![Task::crd(), Miner::crd(), MinerSubmission::crd(), Evaluation::crd(), Leaderboard::crd(), TaskSource::crd()]
}

/// Schema of a field whose shape is owned by Rust code rather than the CRD (the lifecycle
/// state): an object the API server keeps as it is.
pub(crate) fn preserved_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

//! The NetworkPolicy that cuts evaluation pods off: no ingress, no egress (not even DNS).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{BuildError, labels};
use crate::api::Task;

pub fn policy_name(task: &str) -> String {
    super::child_name(&[task, "isolate-evaluation"])
}

/// Deny-all for the evaluation pods of one task: both policy types listed, no rules. Applied
/// before any evaluation Job exists, owned by the Task. The chart installs the same policy for
/// every evaluator pod of its namespace as a second line.
pub fn evaluation_network_policy(task: &Task) -> Result<NetworkPolicy, BuildError> {
    let (namespace, name, owner) = super::owner(task)?;
    let object_labels = super::base_labels(labels::ROLE_EVALUATOR, &name);
    Ok(NetworkPolicy {
        metadata: super::metadata(policy_name(&name), namespace, owner, object_labels),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (labels::ROLE.to_string(), labels::ROLE_EVALUATOR.to_string()),
                    (labels::TASK.to_string(), super::label_value(&name)),
                ])),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_string(), "Egress".to_string()]),
            ingress: None,
            egress: None,
        }),
    })
}

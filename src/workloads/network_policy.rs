//! NetworkPolicies that cut every workload role off: nothing in, and out only what the
//! installation allows that role (preparation: its data source; trainers: their GPU class's
//! allow-list; seal and evaluation: nothing, not even DNS). One policy per role and task,
//! owned by the Task, applied before any of its pods can exist.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{BuildError, WorkloadConfig, labels};
use crate::api::Task;

/// Every role a task runs pods for, in the order their pods first appear.
pub const ROLES: [&str; 4] = [labels::ROLE_PREPARE, labels::ROLE_TRAINER, labels::ROLE_SEAL, labels::ROLE_EVALUATOR];

pub fn policy_name(task: &str, role: &str) -> String {
    super::child_name(&[task, "isolate", role])
}

/// Deny-all for one role's pods of one task, except `egress`: both policy types listed, no
/// ingress rule. Policies only ever add allowances, so the chart's namespace-wide deny-all for
/// every role is a second line that never takes one of these away.
pub fn role_network_policy(
    task: &Task,
    role: &str,
    egress: &[NetworkPolicyEgressRule],
) -> Result<NetworkPolicy, BuildError> {
    let (namespace, name, owner) = super::owner(task)?;
    let object_labels = super::base_labels(role, &name);
    Ok(NetworkPolicy {
        metadata: super::metadata(policy_name(&name, role), namespace, owner, object_labels),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    (labels::ROLE.to_string(), role.to_string()),
                    (labels::TASK.to_string(), super::label_value(&name)),
                ])),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_string(), "Egress".to_string()]),
            ingress: None,
            egress: (!egress.is_empty()).then(|| egress.to_vec()),
        }),
    })
}

/// The evaluation pods' policy: nothing in or out.
pub fn evaluation_network_policy(task: &Task) -> Result<NetworkPolicy, BuildError> {
    role_network_policy(task, labels::ROLE_EVALUATOR, &[])
}

/// The policies of every role of `task`: preparation with `prepare.egress`, trainers with the
/// egress of the task's GPU class, seal and evaluation with none; on S3 every role also gets
/// `objectStore.egress` (the endpoint and DNS), which its presigned URLs need.
pub fn task_network_policies(task: &Task, config: &WorkloadConfig) -> Result<Vec<NetworkPolicy>, BuildError> {
    let class = config.gpu_class(task.spec.gpu_class.as_deref())?;
    ROLES
        .iter()
        .map(|role| {
            let mut egress: Vec<NetworkPolicyEgressRule> = match *role {
                labels::ROLE_PREPARE => config.prepare.egress.clone(),
                labels::ROLE_TRAINER => class.egress.clone(),
                _ => Vec::new(),
            };
            if matches!(config.artifact_store(), super::ArtifactStore::S3 { .. }) {
                egress.extend(config.object_store.iter().flat_map(|s| s.egress.iter().cloned()));
            }
            role_network_policy(task, role, &egress)
        })
        .collect()
}

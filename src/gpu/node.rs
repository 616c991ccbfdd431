//! The agent's Kubernetes edge: its Node's labels, the pods on that node by UID (to name the
//! pod behind a GPU process), and the verdict of the label check as a Node condition (server-side
//! applied: the agent owns only its own entry of the conditions) plus an Event on a mismatch.
//! RBAC: get nodes, patch nodes/status, list pods, create events.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};

use super::agent::AgentError;
use super::class::{self, Mismatch};
use super::metrics::PodRef;
use crate::workloads::labels;

/// Where the agent learns which pod a UID is.
pub trait PodDirectory: Send + Sync {
    fn pods(&self) -> impl Future<Output = Result<HashMap<String, PodRef>, AgentError>> + Send;
}

/// A fixed directory (no API server: attribution by UID only to the pods listed).
impl PodDirectory for HashMap<String, PodRef> {
    async fn pods(&self) -> Result<HashMap<String, PodRef>, AgentError> {
        Ok(self.clone())
    }
}

/// The pods the API server has bound to this node.
pub struct ApiPods {
    pub api: Api<Pod>,
    pub node: String,
}

impl PodDirectory for ApiPods {
    async fn pods(&self) -> Result<HashMap<String, PodRef>, AgentError> {
        let on_node = ListParams::default().fields(&format!("spec.nodeName={}", self.node));
        let pods = self.api.list(&on_node).await.map_err(|e| AgentError::Kube("list pods on this node", e))?;
        Ok(pods
            .items
            .into_iter()
            .filter_map(|pod| {
                let meta = pod.metadata;
                let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default();
                let found = PodRef {
                    task: label(labels::TASK),
                    miner: label(labels::MINER),
                    namespace: meta.namespace.clone().unwrap_or_default(),
                    pod: meta.name.clone().unwrap_or_default(),
                };
                Some((meta.uid?, found))
            })
            .collect())
    }
}

pub async fn get_node(client: Client, node: &str) -> Result<Node, AgentError> {
    Api::<Node>::all(client).get(node).await.map_err(|e| AgentError::Kube("get this node", e))
}

pub const FIELD_MANAGER: &str = "gradients-gpu-agent";

/// Keeps the Node's `GpuClassMismatch` condition in step with the label check.
pub struct NodeReporter {
    api: Api<Node>,
    recorder: Recorder,
    node: Node,
    /// Status and message on the Node now: applied again only when they change, so the
    /// condition's lastTransitionTime is the time of the change (also across agent restarts).
    current: Option<(String, String)>,
}

impl NodeReporter {
    pub fn new(client: Client, node: Node) -> Self {
        let current = node.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|conditions| {
            let ours = conditions.iter().find(|c| c.type_ == class::CONDITION)?;
            Some((ours.status.clone(), ours.message.clone().unwrap_or_default()))
        });
        let instance = node.metadata.name.clone();
        let recorder = Recorder::new(client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance });
        NodeReporter { api: Api::all(client), recorder, node, current }
    }

    pub async fn report(&mut self, mismatches: &[Mismatch]) -> Result<(), AgentError> {
        let (status, reason, message) = class::condition(mismatches);
        let now = (status.to_string(), message.clone());
        if self.current.as_ref() == Some(&now) {
            return Ok(());
        }
        let name = self.node.metadata.name.clone().unwrap_or_default();
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "status": {"conditions": [{
                "type": class::CONDITION,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "lastHeartbeatTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }]},
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch_status(&name, &params, &Patch::Apply(&patch))
            .await
            .map_err(|e| AgentError::Kube("set this node's GpuClassMismatch condition", e))?;
        if status == "True" {
            let event = Event {
                type_: EventType::Warning,
                reason: class::CONDITION.into(),
                note: Some(message.chars().take(1000).collect()),
                action: "CheckGpus".into(),
                secondary: None,
            };
            self.recorder
                .publish(&event, &self.node.object_ref(&()))
                .await
                .map_err(|e| AgentError::Kube("publish an Event on this node", e))?;
        }
        self.current = Some(now);
        Ok(())
    }
}

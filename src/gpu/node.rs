//! The agent's Kubernetes edge: its Node's labels, and the pods on that node by UID (to name
//! the pod behind a GPU process). Reads only; RBAC: get nodes, list pods.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, Client};

use super::agent::AgentError;
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

pub async fn node_labels(client: Client, node: &str) -> Result<BTreeMap<String, String>, AgentError> {
    let found = Api::<Node>::all(client).get(node).await.map_err(|e| AgentError::Kube("get this node", e))?;
    Ok(found.metadata.labels.unwrap_or_default())
}

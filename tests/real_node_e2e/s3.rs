//! Artifacts on S3 through the operator on the real node (issue 10): an S3-compatible server
//! (s3s-fs, built by e2e/build-s3-server; it checks SigV4 signatures and presigned URLs) listens
//! on the node's address; the operator, in-cluster, keeps a whole tournament there and hands
//! every workload presigned URLs, never its key; each role's NetworkPolicy allows the endpoint
//! and nothing else, and the node's firewall enforces it.

use gradients::storage::{Credentials, client};

use crate::s3_server::S3sFs;

pub use crate::s3_server::BUCKET;
/// `workloads.artifacts`: the tournaments' own area.
pub const ARTIFACTS: &str = "s3://gradients/tournaments";
/// The Secret (in the release namespace) with the operator's key pair.
pub const SECRET: &str = "gradients-s3-key";

pub fn credentials() -> Credentials {
    Credentials {
        access_key_id: "gradients-operator".into(),
        secret_access_key: "operator-secret-never-in-a-workload".into(),
    }
}

/// s3s-fs on the node's address, so that pods reach it as they would a cluster's S3 endpoint.
pub struct NodeS3 {
    pub s3: S3sFs,
    pub node_ip: String,
}

impl NodeS3 {
    pub async fn start(node_ip: &str) -> Self {
        let s3 = S3sFs::spawn(node_ip, credentials());
        client::create_bucket(&s3.signer()).await.unwrap();
        Self { s3, node_ip: node_ip.to_string() }
    }

    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        client::list(&self.s3.signer(), prefix).await.unwrap()
    }

    /// `workloads.objectStore` for the chart: the endpoint, and the one egress rule every
    /// workload role needs for it (no DNS: the endpoint is an address).
    pub fn chart_value(&self) -> String {
        format!(
            r#"{{"endpoint":"{}","region":"us-east-1","pathStyle":true,"egress":[{{"to":[{{"ipBlock":{{"cidr":"{}/32"}}}}],"ports":[{{"protocol":"TCP","port":{}}}]}}]}}"#,
            self.s3.store.endpoint,
            self.node_ip,
            url::Url::parse(&self.s3.store.endpoint).unwrap().port().unwrap()
        )
    }

    pub fn secret_yaml(namespace: &str) -> String {
        let key = credentials();
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {SECRET}, namespace: {namespace}}}\n\
             stringData: {{accessKeyId: {}, secretAccessKey: {}}}\n",
            key.access_key_id, key.secret_access_key
        )
    }
}

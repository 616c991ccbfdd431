//! Artifacts on S3 through the operator on the real node (issue 10): an S3-compatible server
//! (s3s-fs, built by e2e/build-s3-server; it checks SigV4 signatures and presigned URLs) listens
//! on the node's address; the operator, in-cluster, keeps a whole tournament there and hands
//! every workload presigned URLs, never its key; each role's NetworkPolicy allows the endpoint
//! and nothing else, and the node's firewall enforces it.

use std::path::Path;
use std::time::Duration;

use gradients::storage::{Credentials, Signer, client};

use crate::s3_server::S3sFs;

pub const BUCKET: &str = "gradients";
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
    server: S3sFs,
    pub node_ip: String,
}

impl NodeS3 {
    pub async fn start(node_ip: &str) -> Self {
        let server = Self { server: S3sFs::spawn(node_ip, &credentials()), node_ip: node_ip.to_string() };
        client::create_bucket(&server.signer()).await.unwrap();
        server
    }

    pub fn signer(&self) -> Signer {
        Signer::new(&self.server.store, BUCKET, &credentials()).unwrap()
    }

    pub async fn put(&self, key: &str, path: &Path) {
        let url = self.signer().put(key, chrono::Utc::now(), Duration::from_secs(60));
        client::put_file(&url, path).await.unwrap_or_else(|e| panic!("PUT {key}: {e}"));
    }

    pub async fn put_tree(&self, prefix: &str, dir: &Path) {
        for file in crate::s3_server::walk(dir) {
            let relative = file.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
            self.put(&format!("{prefix}/{relative}"), &file).await;
        }
    }

    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        client::list(&self.signer(), prefix).await.unwrap()
    }

    /// `workloads.objectStore` for the chart: the endpoint, and the one egress rule every
    /// workload role needs for it (no DNS: the endpoint is an address).
    pub fn chart_value(&self) -> String {
        format!(
            r#"{{"endpoint":"{}","region":"us-east-1","pathStyle":true,"egress":[{{"to":[{{"ipBlock":{{"cidr":"{}/32"}}}}],"ports":[{{"protocol":"TCP","port":{}}}]}}]}}"#,
            self.server.store.endpoint,
            self.node_ip,
            url::Url::parse(&self.server.store.endpoint).unwrap().port().unwrap()
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

//! s3s-fs (Apache-2.0; it checks SigV4 signatures, presigned URLs and their expiry) as a child
//! process: built into the cache by `e2e/build-s3-server`, serving a temporary directory on a
//! free port of `host` with one key pair. Shared by the local S3 tests (`tests/s3`) and the
//! real node's (`tests/real_node_e2e/s3.rs`), which listens on the node's address.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gradients::storage::{Credentials, ObjectStore, Signer, client};

/// The one bucket the tests use.
pub const BUCKET: &str = "gradients";

pub struct S3sFs {
    child: Child,
    pub store: ObjectStore,
    credentials: Credentials,
    _root: tempfile::TempDir,
}

impl S3sFs {
    pub fn spawn(host: &str, credentials: Credentials) -> Self {
        let repo = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
        let build = Command::new(repo.join("e2e/build-s3-server")).stderr(Stdio::inherit()).output().unwrap();
        assert!(build.status.success(), "e2e/build-s3-server failed");
        let binary = String::from_utf8(build.stdout).unwrap().lines().last().unwrap().to_string();
        let port = std::net::TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port();
        let root = tempfile::tempdir().unwrap();
        let child = Command::new(&binary)
            .args(["--host", host, "--port", &port.to_string()])
            .args(["--access-key", &credentials.access_key_id, "--secret-key", &credentials.secret_access_key])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect((host, port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "s3s-fs did not listen on {host}:{port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let store = ObjectStore {
            endpoint: format!("http://{host}:{port}"),
            region: "us-east-1".into(),
            path_style: true,
            egress: vec![],
        };
        Self { child, store, credentials, _root: root }
    }

    /// Signs with the key pair the server was started with (the operator's).
    pub fn signer(&self) -> Signer {
        Signer::new(&self.store, BUCKET, &self.credentials).unwrap()
    }

    pub async fn put(&self, key: &str, path: &Path) {
        let url = self.signer().put(key, chrono::Utc::now(), Duration::from_secs(60));
        client::put_file(&url, path).await.unwrap_or_else(|e| panic!("PUT {key}: {e}"));
    }

    /// Uploads every file below `dir` under `prefix/`.
    pub async fn put_tree(&self, prefix: &str, dir: &Path) {
        for file in walk(dir) {
            let relative = file.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
            self.put(&format!("{prefix}/{relative}"), &file).await;
        }
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file below `dir`, sorted.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out.sort();
    out
}

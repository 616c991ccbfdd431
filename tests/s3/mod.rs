//! `s3://` artifacts against a real S3-compatible server: s3s-fs (Apache-2.0), built into the
//! cache by `e2e/build-s3-server` and started here on a free port with the operator's key pair.

mod roundtrip;
mod scoping;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gradients::storage::{Credentials, ObjectStore, Signer, client};

pub const BUCKET: &str = "gradients";

pub struct S3Server {
    child: Child,
    pub store: ObjectStore,
    _root: tempfile::TempDir,
}

impl S3Server {
    pub fn start() -> Self {
        let build =
            Command::new(crate::common::repo().join("e2e/build-s3-server")).stderr(Stdio::inherit()).output().unwrap();
        assert!(build.status.success(), "e2e/build-s3-server failed");
        let binary = String::from_utf8(build.stdout).unwrap().lines().last().unwrap().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let root = tempfile::tempdir().unwrap();
        let credentials = credentials();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", &credentials.access_key_id, "--secret-key", &credentials.secret_access_key])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "s3s-fs did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let store = ObjectStore {
            endpoint: format!("http://127.0.0.1:{port}"),
            region: "us-east-1".into(),
            path_style: true,
            egress: vec![],
        };
        let server = Self { child, store, _root: root };
        block_on(client::create_bucket(&server.signer())).unwrap();
        server
    }

    /// The operator's own signer.
    pub fn signer(&self) -> Signer {
        Signer::new(&self.store, BUCKET, &credentials()).unwrap()
    }

    /// Uploads a file with the operator's credentials.
    pub fn put(&self, key: &str, path: &Path) {
        let url = self.signer().put(key, chrono::Utc::now(), Duration::from_secs(60));
        block_on(client::put_file(&url, path)).unwrap();
    }

    /// Uploads every file below `dir` under `prefix/`.
    pub fn put_tree(&self, prefix: &str, dir: &Path) {
        for entry in walk(dir) {
            let relative = entry.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
            self.put(&format!("{prefix}/{relative}"), &entry);
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn credentials() -> Credentials {
    Credentials { access_key_id: "gradients-operator".into(), secret_access_key: "operator-secret-do-not-leak".into() }
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out.sort();
    out
}

/// The status of a request with `method` to `url` (body `data` for PUT).
pub fn status(method: &str, url: &str) -> (u16, String) {
    let result = match method {
        "GET" => block_on(client::get_bytes(url)).map(drop),
        _ => block_on(client::put_bytes(url, b"forged".to_vec())),
    };
    match result {
        Ok(()) => (200, String::new()),
        Err(gradients::storage::StorageError::Status { status, body, .. }) => (status, body),
        Err(e) => panic!("{method} {url}: {e}"),
    }
}

/// `url` with its object key replaced (the signature and everything else kept).
pub fn retarget(url: &str, key: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_path(&format!("/{BUCKET}/{key}"));
    parsed.to_string()
}

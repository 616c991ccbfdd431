//! `s3://` artifacts against a real S3-compatible server: s3s-fs (Apache-2.0), built into the
//! cache by `e2e/build-s3-server` and started here on a free port with the operator's key pair.

mod roundtrip;
mod scoping;
mod server;

use std::path::Path;

use gradients::storage::{Credentials, ObjectStore, Signer, client};

pub use server::BUCKET;

pub struct S3Server {
    server: server::S3sFs,
    pub store: ObjectStore,
}

impl S3Server {
    pub fn start() -> Self {
        let server = server::S3sFs::spawn("127.0.0.1", credentials());
        let store = server.store.clone();
        block_on(client::create_bucket(&server.signer())).unwrap();
        Self { server, store }
    }

    pub fn signer(&self) -> Signer {
        self.server.signer()
    }

    /// Uploads a file with the operator's credentials.
    pub fn put(&self, key: &str, path: &Path) {
        block_on(self.server.put(key, path));
    }

    /// Uploads every file below `dir` under `prefix/`.
    pub fn put_tree(&self, prefix: &str, dir: &Path) {
        block_on(self.server.put_tree(prefix, dir));
    }
}

pub fn credentials() -> Credentials {
    Credentials { access_key_id: "gradients-operator".into(), secret_access_key: "operator-secret-do-not-leak".into() }
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
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

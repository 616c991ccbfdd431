//! Artifacts on S3-compatible object storage (`workloads.artifacts: s3://bucket/prefix`).
//!
//! No workload ever gets credentials. The operator holds them (from a Secret, in its own
//! environment) and hands each workload **presigned URLs** (SigV4) for exactly the objects its
//! role may touch, valid until the role's deadline: a trainer may GET its base model and its
//! training inputs and PUT one archive, its own output; the seal may GET that archive and PUT the
//! sealed archive; the evaluator may GET the base model, the held-out data and the sealed
//! archive. A URL names one object and one method, so it opens nothing else.
//!
//! Every location the tournaments write (the prepared data, a trainer's output, a sealed copy)
//! is one tar archive object, `LOCATION.tar`: a role's writes are then one PUT URL, known when
//! its Job is built. Sources (datasets, base models) are single objects or prefixes the
//! operator lists before it builds the Job ([`client::list`]).
//!
//! The workload side ([`transfers`]) is the same on both languages: fetch the objects and
//! archives into the working directory, run the unchanged command on local paths, then pack and
//! store the outputs. Archives are unpacked safely ([`archive`]).

pub mod access;
pub mod archive;
pub mod client;
pub mod s3;
pub mod transfers;
pub mod workload;

pub use access::ObjectAccess;
pub use s3::{Credentials, ObjectStore, S3Uri, Signer};
pub use transfers::{TRANSFERS_ENV, Transfers};

/// Why an object-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid object store configuration: {0}")]
    Config(String),
    #[error("{0:?} is not an s3://BUCKET/KEY location")]
    NotS3(String),
    /// The server answered, with a status that is not success.
    #[error("{method} {what}: HTTP {status}: {body}")]
    Status { method: &'static str, what: String, status: u16, body: String },
    #[error("{method} {what}: {why}")]
    Http { method: &'static str, what: String, why: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// An archive breaks the rules (a link, a FIFO, `..`, too large…): the writer's fault.
    #[error("{0}")]
    Refused(String),
}

impl StorageError {
    pub fn category(&self) -> &'static str {
        match self {
            StorageError::Config(_) => "Config",
            StorageError::NotS3(_) => "NotS3",
            StorageError::Status { .. } => "Status",
            StorageError::Http { .. } => "Http",
            StorageError::Io { .. } => "Io",
            StorageError::Refused(_) => "Refused",
        }
    }
}

pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.display().to_string(), source }
}

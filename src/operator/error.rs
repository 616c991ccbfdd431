//! The operator's errors, each with a stable category for metric labels and Event reasons.

use crate::workloads::BuildError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot build workload: {0}")]
    Build(#[from] BuildError),
    #[error("{0}")]
    InvalidObject(String),
    #[error("weight sink {sink}: {message}")]
    Sink { sink: String, message: String },
    #[error("cannot encode: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("object store: {0}")]
    Storage(#[from] crate::storage::StorageError),
}

impl Error {
    /// A short PascalCase name that does not change between releases or with the message.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) => match status.code {
                409 => "Conflict",
                403 => "Forbidden",
                404 => "NotFound",
                422 => "Invalid",
                429 => "Throttled",
                _ => "KubeApi",
            },
            Error::Kube(_) => "KubeTransport",
            Error::Build(e) => e.category(),
            Error::InvalidObject(_) => "InvalidObject",
            Error::Sink { .. } => "WeightSink",
            Error::Encode(_) => "Encode",
            Error::Storage(_) => "ObjectStore",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

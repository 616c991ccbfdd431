//! What a workload builder needs to hand out URLs: the operator's signing key, the time, and the
//! listings of the source directories the workload reads (read by the operator beforehand, the
//! only I/O, so the builders stay pure).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Credentials, ObjectStore, S3Uri, Signer, StorageError, client};

#[derive(Debug, Clone)]
pub struct ObjectAccess {
    pub store: ObjectStore,
    pub credentials: Credentials,
    pub now: DateTime<Utc>,
    /// Source directory URI (`s3://b/models/x`) → the keys below it.
    pub listings: BTreeMap<String, Vec<String>>,
}

impl ObjectAccess {
    pub fn signer(&self, bucket: &str) -> Result<Signer, StorageError> {
        Signer::new(&self.store, bucket, &self.credentials)
    }

    /// Lists every `s3://` source among `sources` (a file lists as empty) at `now`.
    pub async fn read(
        store: &ObjectStore,
        credentials: &Credentials,
        sources: &[&str],
        now: DateTime<Utc>,
    ) -> Result<Self, StorageError> {
        let mut listings = BTreeMap::new();
        for source in sources.iter().filter(|s| s.starts_with("s3://")) {
            let at = S3Uri::parse(source)?;
            let signer = Signer::new(store, &at.bucket, credentials)?;
            listings.insert(at.uri(), client::list(&signer, &format!("{}/", at.key)).await?);
        }
        Ok(Self { store: store.clone(), credentials: credentials.clone(), now, listings })
    }
}

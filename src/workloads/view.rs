//! A pod's view of the artifact store, built location by location. On a claim: a `subPath`
//! mount per location (read-only unless asked), so a pod sees nothing else of the claim. On S3:
//! presigned URLs for exactly those objects, valid for the role's lifetime, in the
//! `GRADIENTS_TRANSFERS` variable; the workload fetches them into its working directory (the
//! scratch volume) and the paths it is given are relative to it.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Volume, VolumeMount};

use super::BuildError;
use super::config::{ArtifactStore, TOURNAMENTS_DIR, WorkloadConfig};
use crate::storage::transfers::{Archive, Object, STAGING_DIR, TRANSFERS_ENV, Transfers};
use crate::storage::{ObjectAccess, S3Uri};

/// Where a workload that fetches its artifacts runs: the scratch volume.
pub const WORKING_DIR: &str = "/tmp";

pub(crate) struct ArtifactView<'a> {
    store: ArtifactStore,
    access: Option<&'a ObjectAccess>,
    lifetime: Duration,
    mounts: Vec<VolumeMount>,
    transfers: Transfers,
}

/// The volumes, mounts and environment a view adds to a pod.
pub(crate) struct Staged {
    pub volumes: Vec<Volume>,
    pub mounts: Vec<VolumeMount>,
    /// `GRADIENTS_TRANSFERS` when the workload fetches or stores objects.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
}

impl<'a> ArtifactView<'a> {
    /// `lifetime`: how long the role's URLs must stay valid (from queueing to its deadline).
    pub(crate) fn new(config: &WorkloadConfig, access: Option<&'a ObjectAccess>, lifetime: Duration) -> Self {
        Self { store: config.artifact_store(), access, lifetime, mounts: Vec::new(), transfers: Transfers::default() }
    }

    /// Makes the directory `uri` visible at `mount_path`; returns the path the workload is given.
    pub(crate) fn mount(&mut self, uri: &str, mount_path: &str, read_only: bool) -> Result<String, BuildError> {
        self.place(uri, mount_path, read_only, false)
    }

    /// Makes the single file `uri` (a text dataset) visible at `mount_path`, read-only.
    pub(crate) fn mount_file(&mut self, uri: &str, mount_path: &str) -> Result<String, BuildError> {
        self.place(uri, mount_path, true, true)
    }

    fn place(&mut self, uri: &str, mount_path: &str, read_only: bool, file: bool) -> Result<String, BuildError> {
        if let Some(sub_path) = self.store.claim_path(uri) {
            self.mounts.push(VolumeMount {
                name: "artifacts".to_string(),
                mount_path: mount_path.to_string(),
                sub_path: Some(sub_path),
                read_only: Some(read_only),
                ..VolumeMount::default()
            });
            return Ok(mount_path.to_string());
        }
        if !uri.starts_with("s3://") {
            return Ok(uri.to_string());
        }
        let access = self.access.ok_or_else(|| {
            BuildError::ObjectStore(format!("{uri}: no objectStore configuration or credentials to sign URLs with"))
        })?;
        let at = S3Uri::parse(uri).map_err(|e| BuildError::ObjectStore(e.to_string()))?;
        let signer = access.signer(&at.bucket).map_err(|e| BuildError::ObjectStore(e.to_string()))?;
        let local = format!("{STAGING_DIR}{mount_path}");
        let (now, lifetime) = (access.now, self.lifetime);
        if uri.starts_with(&format!("{}/", self.store.uri(TOURNAMENTS_DIR))) {
            // The tournaments' own locations are one archive object each.
            let key = format!("{}.tar", at.key);
            let url = if read_only { signer.get(&key, now, lifetime) } else { signer.put(&key, now, lifetime) };
            let list = if read_only { &mut self.transfers.fetch_archives } else { &mut self.transfers.store_archives };
            list.push(Archive { dir: local.clone(), url });
        } else if !read_only {
            return Err(BuildError::ObjectStore(format!("{uri}: only the tournaments' own area is ever written")));
        } else if file {
            self.transfers.fetch.push(Object { path: local.clone(), url: signer.get(&at.key, now, lifetime) });
        } else {
            let keys =
                access.listings.get(&at.uri()).filter(|keys| !keys.is_empty()).ok_or_else(|| {
                    BuildError::ObjectStore(format!("{uri}: no objects below it (or it was not listed)"))
                })?;
            for key in keys {
                let relative = key.strip_prefix(&format!("{}/", at.key)).unwrap_or(key);
                self.transfers
                    .fetch
                    .push(Object { path: format!("{local}/{relative}"), url: signer.get(key, now, lifetime) });
            }
        }
        Ok(local)
    }

    /// The claim's volume (read-only unless some mount writes) and the mounts, after `first`.
    pub(crate) fn finish(self, first: (Volume, VolumeMount)) -> Staged {
        let (volume, mount) = first;
        let mut volumes = vec![volume];
        let mut mounts = vec![mount];
        if let (ArtifactStore::Claim(claim), false) = (&self.store, self.mounts.is_empty()) {
            let read_only = self.mounts.iter().all(|m| m.read_only == Some(true));
            volumes.push(Volume {
                name: "artifacts".to_string(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(read_only),
                }),
                ..Volume::default()
            });
        }
        mounts.extend(self.mounts);
        let (env, working_dir) = if self.transfers.is_empty() {
            (Vec::new(), None)
        } else {
            let transfers = Transfers { version: 1, ..self.transfers };
            let json = serde_json::to_string(&transfers).unwrap_or_default();
            (vec![(TRANSFERS_ENV.to_string(), json)], Some(WORKING_DIR.to_string()))
        };
        Staged { volumes, mounts, env, working_dir }
    }
}

/// How long a role's URLs must live: it may wait `pending` for a node, then run `running`.
pub(crate) fn lifetime(config: &WorkloadConfig, running_s: u64) -> Duration {
    let pending = config.lifecycle.clone().unwrap_or_default().pending_timeout_s;
    let max = crate::storage::s3::MAX_URL_LIFETIME_S;
    Duration::from_secs(pending.map_or(max, |p| p.saturating_add(running_s)).min(max))
}

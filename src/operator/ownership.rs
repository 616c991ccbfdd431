//! Which objects and pods the operator trusts. Anyone who may create objects in a namespace can
//! give one our name, our labels, even an owner reference to our Task; nobody can give it a uid
//! that we recorded when we created ours. So an object is ours only when its uid is the one
//! recorded in its owner's status, and a termination message counts only from a pod that such
//! a Job controls and that runs exactly the Job's container with the configured image.
//!
//! A uid exists only once the object does, so it is recorded after the create, and a crash in
//! between would leave our own object looking foreign (its work redone under a new name: a
//! duplicate). Before each create the owner's status therefore records a commitment, the
//! SHA-256 of a fresh random token, and the object carries the token itself. Nobody else knows
//! the token before our create (the status shows only its hash), and once our object exists
//! the name is taken; so an unrecorded object whose token matches the commitment is ours,
//! adopted and its uid recorded. Each new attempt to create commits a new token.

use std::fmt::Debug;
use std::future::Future;
use std::sync::OnceLock;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::api::{ObjectMeta, PostParams};
use kube::core::NamespaceResourceScope;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::context::FIELD_MANAGER;
use super::error::Result;

/// The annotation that carries an object's creation token.
pub const CREATION_TOKEN: &str = "gradients.io/creation-token";

/// What exists under a name the operator wants for one of its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    Absent,
    /// The object the operator created: its uid is the recorded one.
    Ours,
    /// The object the operator created but whose uid it has not recorded yet (it crashed or
    /// failed right after the create): its token matches the committed one. Record its uid.
    Unrecorded,
    /// Someone else's object under our name: never adopted, read or changed.
    Foreign,
}

/// What the owner's status says about one of its children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record<'a> {
    /// The uid recorded after the create.
    pub uid: Option<&'a str>,
    /// The commitment recorded before the create ([`commitment`] of the object's token).
    pub commitment: Option<&'a str>,
}

pub fn ownership(existing: Option<&ObjectMeta>, record: Record<'_>) -> Ownership {
    let Some(meta) = existing else { return Ownership::Absent };
    match record.uid {
        // Once a uid is recorded, only that object is ours.
        Some(uid) if meta.uid.as_deref() == Some(uid) => Ownership::Ours,
        Some(_) => Ownership::Foreign,
        None => {
            let token = meta.annotations.as_ref().and_then(|a| a.get(CREATION_TOKEN));
            match (token, record.commitment) {
                (Some(token), Some(committed)) if meta.uid.is_some() && commitment(token) == committed => {
                    Ownership::Unrecorded
                }
                _ => Ownership::Foreign,
            }
        }
    }
}

/// A fresh creation token: 128 random bits from the thread's CSPRNG (seeded by the OS).
pub fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    hex(&bytes)
}

/// What the owner's status records before the create: `sha256:` and the token's digest.
pub fn commitment(token: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(token.as_bytes())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key a child's uid is recorded under in its owner's status (`Job/t-prepare-1`).
pub fn key<K: Resource<DynamicType = ()>>(name: &str) -> String {
    format!("{}/{name}", K::kind(&()))
}

/// A foreign object as an Event names it: kind, namespace/name, uid, and who wrote it.
pub fn describe<K: Resource<DynamicType = ()>>(object: &K) -> String {
    let meta = object.meta();
    let mut writers: Vec<&str> = meta.managed_fields.iter().flatten().filter_map(|m| m.manager.as_deref()).collect();
    writers.dedup();
    format!(
        "{} {}/{} (uid {}, written by {})",
        K::kind(&()),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or("?"),
        if writers.is_empty() { "unknown".to_string() } else { writers.join(", ") }
    )
}

/// Why a pod's termination message must not be read, or `None` when it comes from the trusted
/// path: `job` (the recorded one) controls the pod by uid, and the pod runs the Job's own
/// containers and volumes, its `container` with `image`. Labels prove nothing: anyone who may
/// create pods can copy them.
pub fn untrusted_pod(pod: &Pod, job: &Job, container: &str, image: &str) -> Option<String> {
    let name = pod.name_any();
    let controller = pod.owner_references().iter().find(|o| o.controller == Some(true));
    let job_uid = job.metadata.uid.as_deref();
    match controller {
        Some(owner) if owner.kind == "Job" && Some(owner.uid.as_str()) == job_uid => {}
        Some(owner) => {
            return Some(format!(
                "pod {name} is controlled by {} {} (uid {}), not by Job {} (uid {})",
                owner.kind,
                owner.name,
                owner.uid,
                job.name_any(),
                job_uid.unwrap_or("?")
            ));
        }
        None => return Some(format!("pod {name} has no controller; only Job {}'s own pods count", job.name_any())),
    }
    let template = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let (Some(spec), Some(template)) = (pod.spec.as_ref(), template) else {
        return Some(format!("pod {name} or Job {} has no pod spec", job.name_any()));
    };
    let running = spec.containers.iter().find(|c| c.name == container).and_then(|c| c.image.as_deref());
    if running != Some(image) {
        return Some(format!(
            "pod {name} runs {} in container {container}, not the configured {image}",
            running.unwrap_or("nothing")
        ));
    }
    if digest_of(&pod.metadata, spec) != digest_of(&job.metadata, template) {
        return Some(format!("pod {name} does not run Job {}'s containers and volumes", job.name_any()));
    }
    None
}

/// The in-memory annotation of a pod or Job whose containers and volumes the operator condensed
/// into their [`workload_digest`] (`condense`). It is never written to the API server.
pub const WORKLOAD_DIGEST: &str = "gradients.io/workload-digest";

/// The digest of the parts of a pod that decide what its containers compute and may read or
/// write. Admission defaulting treats a Job's template and its pods alike, so a real pod's digest
/// is its Job's. It is keyed with this process's own random secret: a digest an attacker writes
/// into a forged pod's annotations cannot match, whatever they know of the Job.
pub fn workload_digest(spec: &PodSpec) -> String {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(rand::random);
    let containers: Vec<_> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| (&c.name, &c.image, &c.command, &c.args, &c.env, &c.volume_mounts, &c.termination_message_path))
        .collect();
    let init_containers = spec.init_containers.iter().flatten().count();
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    // These types always serialize; were one not to, the digest matches nothing.
    let Ok(canonical) = serde_json::to_vec(&(containers, init_containers, volumes)) else { return new_token() };
    hex(&Sha256::new().chain_update(key).chain_update(canonical).finalize())
}

/// The workload digest of a pod, or of a Job and its template: the one recorded when the object
/// was condensed, else the spec's own.
fn digest_of(meta: &ObjectMeta, spec: &PodSpec) -> String {
    match meta.annotations.as_ref().and_then(|a| a.get(WORKLOAD_DIGEST)) {
        Some(digest) => digest.clone(),
        None => workload_digest(spec),
    }
}

/// The pods whose results count, and each one ignored with why.
pub fn trusted_pods<'a>(
    pods: &'a [Pod],
    job: &Job,
    container: &str,
    image: &str,
) -> (Vec<Pod>, Vec<(&'a Pod, String)>) {
    let mut trusted = Vec::new();
    let mut ignored = Vec::new();
    for pod in pods {
        match untrusted_pod(pod, job, container, image) {
            None => trusted.push(pod.clone()),
            Some(why) => ignored.push((pod, why)),
        }
    }
    (trusted, ignored)
}

/// The outcome of asking for one of the operator's objects by name.
#[derive(Debug)]
pub enum Claim<K> {
    /// It existed and is ours.
    Ours(K),
    /// Ours, its uid not recorded yet (just created, or created before a crash): record it
    /// before anything relies on it.
    Unrecorded(K),
    /// Someone else's object holds the name; it is left alone.
    Foreign(K),
}

/// Creates `object` unless an object of its name exists, and says whose that one is. A create,
/// not an apply: an apply would silently take over an object someone placed under our name.
/// Before the create, `commit` records the commitment of the token the object will carry; an
/// error there creates nothing. A name with nothing recorded is not read first: nothing of ours
/// can hold it, and someone else's object there is found by the create.
pub async fn claim<K, F, Fut>(client: &Client, object: &K, record: Record<'_>, commit: F) -> Result<Claim<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + Debug,
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    if (record.uid.is_some() || record.commitment.is_some())
        && let Some(existing) = api.get_opt(&name).await?
    {
        return Ok(judge(existing, record));
    }
    let token = new_token();
    commit(commitment(&token)).await?;
    create_committed(client, object, token).await
}

/// Creates `object` carrying `token`, whose commitment its owner's status already records: for
/// a name the owner never committed to before this token, nothing of ours can exist, so an
/// object found there (409) is someone else's.
pub async fn create_committed<K>(client: &Client, object: &K, token: String) -> Result<Claim<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + Debug,
{
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let committed = commitment(&token);
    let mut object = object.clone();
    object.meta_mut().annotations.get_or_insert_with(Default::default).insert(CREATION_TOKEN.to_string(), token);
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PostParams::default() };
    match api.create(&params, &object).await {
        Ok(created) => Ok(Claim::Unrecorded(created)),
        // Someone created it before us (without our new token).
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let record = Record { uid: None, commitment: Some(&committed) };
            Ok(judge(api.get(&name).await?, record))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whose the object found under our name is, given what the owner's status records of it.
fn judge<K: Resource<DynamicType = ()>>(existing: K, record: Record<'_>) -> Claim<K> {
    match ownership(Some(existing.meta()), record) {
        Ownership::Ours => Claim::Ours(existing),
        Ownership::Unrecorded => {
            tracing::info!(object = %describe(&existing), "adopting an object created before its uid was recorded");
            Claim::Unrecorded(existing)
        }
        Ownership::Absent | Ownership::Foreign => Claim::Foreign(existing),
    }
}

#[cfg(test)]
#[path = "ownership_tests.rs"]
mod tests;

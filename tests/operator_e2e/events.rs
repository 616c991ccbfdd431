//! The operator's Events against the real API server: repeats of one reason about one object
//! fold into the first Event's series, another reason or related object gets its own Event, and
//! a repeat whose Event the API server no longer has starts a new one.

use gradients::operator::events::{Events, Note};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, Resource};

use crate::support::*;

fn note<'a>(regarding: &ObjectReference, reason: &'a str, related: Option<&ObjectReference>) -> Note<'a> {
    Note {
        regarding: regarding.clone(),
        related: related.cloned(),
        warning: true,
        reason,
        action: "Reconcile",
        note: format!("{reason} about {}", regarding.name.as_deref().unwrap_or_default()),
    }
}

/// The Events of `ns` by reason, with the count of each one's series (1 when it has none).
async fn events(api: &Api<Event>) -> Vec<(String, i32)> {
    let mut found: Vec<(String, i32)> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.series.map(|s| s.count).unwrap_or(1)))
        .collect();
    found.sort();
    found
}

#[tokio::test]
#[ignore = "needs the e2e cluster: e2e/test -- cargo test --test operator_e2e -- --ignored"]
async fn repeated_events_fold_into_a_series_and_a_lost_one_starts_again() {
    let cluster = Cluster::connect().await;
    let ns = cluster.fresh_namespace("e2e-events").await;
    let objects: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), &ns);
    let mut references = Vec::new();
    for name in ["task", "pod"] {
        let object = ConfigMap {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            ..ConfigMap::default()
        };
        references.push(objects.create(&PostParams::default(), &object).await.unwrap().object_ref(&()));
    }
    let (task, pod) = (&references[0], &references[1]);
    let recorder = Events::new(cluster.client.clone(), "gradients-operator".into(), "e2e".into());
    for _ in 0..3 {
        recorder.publish(note(task, "ForgedPod", Some(pod))).await.unwrap();
    }
    recorder.publish(note(task, "ForgedPod", None)).await.unwrap();
    recorder.publish(note(task, "NotAdopted", Some(pod))).await.unwrap();
    let api: Api<Event> = Api::namespaced(cluster.client.clone(), &ns);
    assert_eq!(events(&api).await, [("ForgedPod".into(), 1), ("ForgedPod".into(), 3), ("NotAdopted".into(), 1)]);

    // The API server drops Events after its TTL: the next repeat creates one again.
    api.delete_collection(&DeleteParams::default(), &ListParams::default()).await.unwrap();
    recorder.publish(note(task, "ForgedPod", Some(pod))).await.unwrap();
    recorder.publish(note(task, "ForgedPod", Some(pod))).await.unwrap();
    assert_eq!(events(&api).await, [("ForgedPod".into(), 2)]);
    cluster.delete_namespace(&ns).await;
}

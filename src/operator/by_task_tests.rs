use kube::runtime::watcher::Event;

use super::*;
use crate::operator::condense::CachedJob;
use crate::workloads::labels;

/// A Job as the index sees it: read into the cache's form, from the JSON.
fn job(namespace: &str, name: &str, task: Option<&str>) -> CachedJob {
    let labels = task.map(|task| serde_json::json!({ labels::TASK: task })).unwrap_or_default();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
    }))
    .unwrap()
}

#[test]
fn a_tasks_children_are_found_by_namespace_and_label_and_nothing_else() {
    let index = ByTask::default();
    index.observe(&Event::Apply(job("a", "t1-prep", Some("t1"))));
    index.observe(&Event::Apply(job("a", "t1-eval", Some("t1"))));
    index.observe(&Event::Apply(job("a", "t2-prep", Some("t2"))));
    index.observe(&Event::Apply(job("b", "t1-prep", Some("t1"))));
    index.observe(&Event::Apply(job("a", "unlabelled", None)));
    assert_eq!(index.names("a", "t1"), ["t1-eval", "t1-prep"]);
    assert_eq!(index.names("b", "t1"), ["t1-prep"]);
    assert!(index.names("a", "t3").is_empty());
    assert_eq!(index.len(), 4);
}

#[test]
fn a_relabelled_object_moves_and_a_deleted_one_goes() {
    let index = ByTask::default();
    index.observe(&Event::Apply(job("a", "forged", Some("t1"))));
    index.observe(&Event::Apply(job("a", "forged", Some("t2"))));
    assert!(index.names("a", "t1").is_empty());
    assert_eq!(index.names("a", "t2"), ["forged"]);
    index.observe(&Event::Apply(job("a", "forged", None)));
    assert!(index.names("a", "t2").is_empty());
    index.observe(&Event::Apply(job("a", "j", Some("t1"))));
    // A deletion names the object by its last labels; the index goes by its own record.
    index.observe(&Event::Delete(job("a", "j", Some("stale"))));
    assert!(index.names("a", "t1").is_empty());
    assert_eq!(index.len(), 0);
}

#[test]
fn a_relist_replaces_the_index_only_once_complete() {
    let index = ByTask::default();
    index.observe(&Event::Apply(job("a", "gone-while-disconnected", Some("t1"))));
    index.observe(&Event::<CachedJob>::Init);
    index.observe(&Event::InitApply(job("a", "kept", Some("t1"))));
    // Until the relist is complete, readers see the last complete index.
    assert_eq!(index.names("a", "t1"), ["gone-while-disconnected"]);
    index.observe(&Event::<CachedJob>::InitDone);
    assert_eq!(index.names("a", "t1"), ["kept"]);
    assert_eq!(index.len(), 1);
}

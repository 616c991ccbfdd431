//! Events on the objects the operator reconciles. Repeats of one reason about one object (and
//! one related object) within [`SERIES_WINDOW`] fold into the first Event's series, as
//! kube-runtime's `Recorder` does, but with bounded memory and constant cost per Event:
//! kube-runtime's keeps each Event it published, whole, for 6 minutes and walks all of them on
//! every publish (issue 13: at 100 Tasks its table alone held 5.9 MB, and it grows with the
//! Tasks running at once).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// How long an Event takes the repeats of its reason (kube-runtime's recorder: 6 minutes).
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// At most this many Events take repeats at once; the oldest gives way first.
pub const SERIES_CAPACITY: usize = 4096;

/// One Event to publish.
pub struct Note<'a> {
    pub regarding: ObjectReference,
    pub related: Option<ObjectReference>,
    pub warning: bool,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: String,
}

impl Note<'_> {
    /// What repeats share: the type, reason and action, and both objects.
    fn key(&self) -> u64 {
        let mut hasher = DefaultHasher::new();
        (self.warning, self.reason, self.action).hash(&mut hasher);
        for reference in std::iter::once(&self.regarding).chain(self.related.as_ref()) {
            (&reference.uid, &reference.kind, &reference.namespace, &reference.name).hash(&mut hasher);
        }
        hasher.finish()
    }
}

/// What to do with an Event: create it, or count one more repeat in an existing one's series.
#[derive(Debug, PartialEq, Eq)]
pub enum Publish {
    Create { name: String },
    Repeat { name: String, count: i32 },
}

/// The Events that take repeats now: by key, and in the order they were created.
#[derive(Default)]
struct Series {
    open: HashMap<u64, Open>,
    created: VecDeque<(u64, Instant)>,
}

struct Open {
    name: String,
    count: i32,
    created: Instant,
}

impl Series {
    /// What to publish for `key` at `now`; `name` names a new Event.
    fn publish(&mut self, key: u64, name: impl FnOnce() -> String, now: Instant) -> Publish {
        while self.created.front().is_some_and(|(_, created)| now.duration_since(*created) >= SERIES_WINDOW) {
            self.drop_oldest();
        }
        if let Some(open) = self.open.get_mut(&key) {
            open.count += 1;
            return Publish::Repeat { name: open.name.clone(), count: open.count };
        }
        while self.open.len() >= SERIES_CAPACITY {
            self.drop_oldest();
        }
        let name = name();
        self.open.insert(key, Open { name: name.clone(), count: 1, created: now });
        self.created.push_back((key, now));
        Publish::Create { name }
    }

    fn drop_oldest(&mut self) {
        if let Some((oldest, created)) = self.created.pop_front()
            && self.open.get(&oldest).is_some_and(|open| open.created == created)
        {
            self.open.remove(&oldest);
        }
    }

    /// Forgets `key`'s Event (it is gone from the API server): its next repeat creates one.
    fn close(&mut self, key: u64) {
        self.open.remove(&key);
    }
}

pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    series: Mutex<Series>,
}

impl Events {
    pub fn new(client: Client, controller: String, instance: String) -> Events {
        Events { client, controller, instance, series: Mutex::default() }
    }

    /// Publishes `note` in the namespace of the object it is about ("default" for one without).
    pub async fn publish(&self, note: Note<'_>) -> Result<(), kube::Error> {
        let key = note.key();
        let now = Timestamp::now();
        let new_name =
            || format!("{}.{:x}", note.regarding.name.as_deref().unwrap_or(&self.controller), now.as_nanosecond());
        let namespace = note.regarding.namespace.clone().unwrap_or_else(|| "default".to_string());
        let api = Api::<Event>::namespaced(self.client.clone(), &namespace);
        let decision = self.locked().publish(key, new_name, Instant::now());
        let name = match decision {
            Publish::Create { name } => name,
            Publish::Repeat { name, count } => {
                let patch = serde_json::json!({ "series": EventSeries { count, last_observed_time: MicroTime(now) } });
                match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    // The API server dropped the Event (its TTL): the repeat starts a new one.
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        let mut series = self.locked();
                        series.close(key);
                        match series.publish(key, new_name, Instant::now()) {
                            Publish::Create { name } | Publish::Repeat { name, .. } => name,
                        }
                    }
                    other => return other.map(|_| ()),
                }
            }
        };
        let event = self.event(name, namespace, note, now);
        api.create(&PostParams::default(), &event).await.map(|_| ())
    }

    fn event(&self, name: String, namespace: String, note: Note<'_>, now: Timestamp) -> Event {
        Event {
            metadata: ObjectMeta { name: Some(name), namespace: Some(namespace), ..ObjectMeta::default() },
            action: Some(note.action.to_string()),
            reason: Some(note.reason.to_string()),
            note: Some(note.note),
            type_: Some(if note.warning { "Warning" } else { "Normal" }.to_string()),
            event_time: Some(MicroTime(now)),
            regarding: Some(note.regarding),
            related: note.related,
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> impl FnOnce() -> String + '_ {
        move || n.to_string()
    }

    #[test]
    fn repeats_within_the_window_count_in_the_first_events_series() {
        let mut series = Series::default();
        let start = Instant::now();
        assert_eq!(series.publish(1, name("a"), start), Publish::Create { name: "a".into() });
        assert_eq!(
            series.publish(1, name("b"), start + Duration::from_secs(60)),
            Publish::Repeat { name: "a".into(), count: 2 }
        );
        assert_eq!(series.publish(2, name("c"), start + Duration::from_secs(61)), Publish::Create { name: "c".into() });
        // The window runs from the Event's creation: later repeats start a new Event.
        let later = start + SERIES_WINDOW + Duration::from_secs(1);
        assert_eq!(series.publish(1, name("d"), later), Publish::Create { name: "d".into() });
        assert_eq!(series.publish(1, name("e"), later), Publish::Repeat { name: "d".into(), count: 2 });
    }

    #[test]
    fn the_oldest_open_series_gives_way_when_full_so_memory_stays_bounded() {
        let mut series = Series::default();
        let now = Instant::now();
        for key in 0..SERIES_CAPACITY as u64 + 10 {
            series.publish(key, || format!("e{key}"), now);
        }
        assert_eq!(series.open.len(), SERIES_CAPACITY);
        assert_eq!(series.created.len(), SERIES_CAPACITY);
        // The first ten gave way, the newest still take repeats.
        assert_eq!(series.publish(0, name("again"), now), Publish::Create { name: "again".into() });
        let newest = SERIES_CAPACITY as u64 + 9;
        assert_eq!(series.publish(newest, name("x"), now), Publish::Repeat { name: format!("e{newest}"), count: 2 });
        assert_eq!(series.open.len(), SERIES_CAPACITY);
    }

    #[test]
    fn a_closed_series_starts_again_with_a_new_event() {
        let mut series = Series::default();
        let now = Instant::now();
        series.publish(7, name("a"), now);
        series.close(7);
        assert_eq!(series.publish(7, name("b"), now), Publish::Create { name: "b".into() });
        assert_eq!(series.publish(7, name("c"), now), Publish::Repeat { name: "b".into(), count: 2 });
        assert_eq!(series.created.len(), 2, "the closed Event's place is dropped when it comes up");
    }

    fn reference(kind: &str, name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some(kind.into()),
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            ..ObjectReference::default()
        }
    }

    #[test]
    fn repeats_are_the_same_reason_about_the_same_objects() {
        let note = |reason, regarding: &str, related: Option<&str>| Note {
            regarding: reference("Task", regarding),
            related: related.map(|r| reference("Pod", r)),
            warning: true,
            reason,
            action: "Reconcile",
            note: "anything".into(),
        };
        let base = note("ForgedPod", "t", Some("p")).key();
        assert_eq!(base, Note { note: "another note".into(), ..note("ForgedPod", "t", Some("p")) }.key());
        assert_ne!(base, note("ForgedPod", "t", Some("q")).key());
        assert_ne!(base, note("ForgedPod", "t", None).key());
        assert_ne!(base, note("ForgedPod", "u", Some("p")).key());
        assert_ne!(base, note("Failed", "t", Some("p")).key());
        assert_ne!(base, Note { warning: false, ..note("ForgedPod", "t", Some("p")) }.key());
    }
}

//! One reconcile of a TaskSource as a pure function: from the source, its Tasks and the organic
//! Tasks that wait, which draws to create and the status to write.

use chrono::{DateTime, Utc};

use super::SourceError;
use super::draw::{self, Draw};
use crate::api::conditions::{self, Observed};
use crate::api::task_source::{LastCreated, TaskSourceSpec, TaskSourceStatus, TypeCount};
use crate::mechanism::TaskType;
use crate::tournament::Phase;

/// A synthetic Task of this source that exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    pub name: String,
    /// Its draw index (from its label); `None` when the label is missing or not a number.
    pub index: Option<u64>,
    pub task_type: TaskType,
    /// Succeeded or Failed.
    pub finished: bool,
}

/// What an organic Task waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    Miners,
    Gpus,
}

/// An organic Task waits for miners while it is `Delayed` (too few miners to start), and for
/// GPUs while it is `Training` with a trainer whose pod does not run yet (its MinerSubmission
/// is `Pending`: queued or unschedulable). Other phases wait for nothing a synthetic Task
/// would take from them.
pub fn organic_waiting(phase: Phase, pending_trainers: usize) -> Option<Waiting> {
    match phase {
        Phase::Delayed => Some(Waiting::Miners),
        Phase::Training if pending_trainers > 0 => Some(Waiting::Gpus),
        _ => None,
    }
}

/// Everything a reconcile observed.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub source: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a TaskSourceSpec,
    pub previous: &'a TaskSourceStatus,
    /// This source's Tasks.
    pub own: &'a [Existing],
    /// Organic Tasks of the namespace that wait, by name.
    pub waiting: &'a [(String, Waiting)],
    /// The operator's verdict on the catalog's URIs (`workloads.allowedSources`): a Task drawn
    /// from a refused entry would fail at once and be replaced, over and over.
    pub sources: &'a Result<(), SourceError>,
    pub now: DateTime<Utc>,
}

/// An Event to publish: warning or not, reason, note.
pub type Notice = (bool, &'static str, String);

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Tasks to create, in index order.
    pub create: Vec<Draw>,
    /// The status once they exist.
    pub status: TaskSourceStatus,
    /// Events for what changed since the previous status (creations are announced by the caller).
    pub notices: Vec<Notice>,
}

pub fn plan(o: &Observation) -> Plan {
    let running = o.own.iter().filter(|t| !t.finished).count() as u32;
    let recorded = o.own.iter().filter_map(|t| t.index).map(|i| i + 1).max().unwrap_or(0);
    let first = o.previous.next_index.max(recorded);
    let pause = pause_message(o.spec, o.waiting);
    let catalog = draw::validate(o.spec, o.source).and_then(|()| o.sources.clone());
    let wanted = o.spec.in_flight.saturating_sub(running) as u64;
    let create: Vec<Draw> = match (&catalog, &pause) {
        (Ok(()), None) => {
            (first..first + wanted).filter_map(|i| draw::draw(o.spec, o.source, o.spec.seed, i).ok()).collect()
        }
        _ => Vec::new(),
    };

    let catalog_condition = match &catalog {
        Ok(()) => Observed::new("CatalogValid", Some(true), "Drawable", servable_summary(o.spec)),
        Err(e) => Observed::new("CatalogValid", Some(false), e.category(), e.to_string()),
    };
    let pause_condition = match &pause {
        Some(message) => Observed::new("Paused", Some(true), "OrganicTasksWaiting", message.clone()),
        None => Observed::new("Paused", Some(false), "NoOrganicTaskWaiting", ""),
    };
    let message = match (&catalog, &pause) {
        (Err(e), _) => e.to_string(),
        (Ok(()), Some(message)) => message.clone(),
        (Ok(()), None) => String::new(),
    };
    let mut notices = Vec::new();
    let was_paused = o.previous.paused;
    match &pause {
        Some(message) if !was_paused => notices.push((false, "Paused", message.clone())),
        None if was_paused => notices.push((false, "Resumed", "no organic Task waits any more".to_string())),
        _ => {}
    }
    if let Err(e) = &catalog {
        let before = o.previous.conditions.iter().find(|c| c.type_ == "CatalogValid");
        if before.is_none_or(|c| c.status != "False" || c.message != e.to_string()) {
            notices.push((true, e.category(), e.to_string()));
        }
    }

    let status = TaskSourceStatus {
        observed_generation: o.generation,
        conditions: conditions::merge(
            &o.previous.conditions,
            &[catalog_condition, pause_condition],
            o.generation,
            o.now,
        ),
        in_flight: running + create.len() as u32,
        created: (o.own.len() + create.len()) as u32,
        next_index: first + create.len() as u64,
        paused: pause.is_some(),
        message,
        types: type_counts(o.spec, o.own, &create),
        last_created: match create.last() {
            Some(last) => Some(LastCreated {
                name: last.name.clone(),
                index: last.index,
                task_type: last.task_type.to_string(),
                at: o.now,
            }),
            None => o.previous.last_created.clone(),
        },
    };
    Plan { create, status, notices }
}

/// Why creation pauses, or `None` when it does not.
fn pause_message(spec: &TaskSourceSpec, waiting: &[(String, Waiting)]) -> Option<String> {
    if !spec.pause_while_organic_waiting || waiting.is_empty() {
        return None;
    }
    const SHOWN: usize = 5;
    let mut names: Vec<String> = waiting
        .iter()
        .take(SHOWN)
        .map(|(name, why)| {
            format!(
                "{name} (for {})",
                match why {
                    Waiting::Miners => "miners",
                    Waiting::Gpus => "GPUs",
                }
            )
        })
        .collect();
    if waiting.len() > SHOWN {
        names.push(format!("and {} more", waiting.len() - SHOWN));
    }
    let count = waiting.len();
    let noun = if count == 1 { "organic Task waits" } else { "organic Tasks wait" };
    Some(format!("{count} {noun}: {}", names.join(", ")))
}

/// "shares InstructText 0.25, …; not served: Image (no model serves it)".
fn servable_summary(spec: &TaskSourceSpec) -> String {
    let shares = draw::shares(spec);
    let drawn: Vec<String> =
        shares.iter().filter(|(_, s)| *s > 0.0).map(|(t, s)| format!("{t} {}", round(*s))).collect();
    let configured = draw::mechanism(spec).synthetic_task_mix;
    let left_out: Vec<String> = TaskType::ALL
        .iter()
        .filter(|t| configured.weight(**t) > 0.0 && !draw::servable(spec, **t))
        .map(|t| format!("{t} ({})", draw::unservable_reason(spec, *t)))
        .collect();
    if left_out.is_empty() {
        format!("shares {}", drawn.join(", "))
    } else {
        format!("shares {}; not served: {}", drawn.join(", "), left_out.join(", "))
    }
}

fn type_counts(spec: &TaskSourceSpec, own: &[Existing], created: &[Draw]) -> Vec<TypeCount> {
    let all: Vec<(TaskType, bool)> =
        own.iter().map(|t| (t.task_type, t.finished)).chain(created.iter().map(|d| (d.task_type, false))).collect();
    draw::shares(spec)
        .into_iter()
        .map(|(task_type, share)| {
            let created = all.iter().filter(|(t, _)| *t == task_type).count() as u32;
            let in_flight = all.iter().filter(|(t, finished)| *t == task_type && !finished).count() as u32;
            TypeCount {
                task_type: task_type.to_string(),
                share: round(share),
                created,
                created_share: if all.is_empty() { 0.0 } else { round(f64::from(created) / all.len() as f64) },
                in_flight,
            }
        })
        .collect()
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

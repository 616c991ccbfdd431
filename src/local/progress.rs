//! The per-miner display on stderr: phase, elapsed / allotted time, latest train loss.
//! On a terminal it redraws in place once a second; otherwise it prints a line whenever an
//! entrant's phase changes, so logs stay readable.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::tournament::{Entrant, TaskState, Work, WorkKind, WorkOutput, WorkloadId};

/// `(step, total steps, loss)` from a trainer's latest progress line.
pub type StepLoss = (u64, u64, Option<f64>);

/// What the executor knows beyond the state: running workloads (elapsed seconds and the
/// latest `(step, total, loss)` progress line) and queued ones.
#[derive(Debug, Default)]
pub struct Live {
    pub running: BTreeMap<WorkloadId, (f64, Option<StepLoss>)>,
    pub queued: BTreeSet<WorkloadId>,
}

pub struct Progress {
    enabled: bool,
    tty: bool,
    drawn_lines: usize,
    last_draw: Option<DateTime<Utc>>,
    last_phase: BTreeMap<String, String>,
}

impl Progress {
    pub fn new(enabled: bool, run_dir: &Path) -> Self {
        let tty = std::io::stderr().is_terminal();
        if enabled {
            eprintln!("run directory: {}", run_dir.display());
        }
        Self { enabled, tty, drawn_lines: 0, last_draw: None, last_phase: BTreeMap::new() }
    }

    /// A lifecycle event (phase change, retry) on its own line.
    pub fn event(&mut self, reason: &str, message: &str) {
        if self.enabled {
            self.clear();
            eprintln!("[{reason}] {message}");
        }
    }

    pub fn draw(&mut self, state: &TaskState, live: &Live, now: DateTime<Utc>) {
        if !self.enabled || state.entrants.is_empty() {
            return;
        }
        let hours = state.hours.unwrap_or(0.0);
        let lines: Vec<(String, String, String)> = state.entrants.iter().map(|e| line(e, hours, live)).collect();
        if self.tty {
            if self.last_draw.is_some_and(|t| (now - t).num_milliseconds() < 1000) {
                return;
            }
            self.last_draw = Some(now);
            self.clear();
            let mut err = std::io::stderr().lock();
            for (name, phase, detail) in &lines {
                let _ = writeln!(err, "  {name:<16} {phase:<12} {detail}");
            }
            self.drawn_lines = lines.len();
        } else {
            for (name, phase, detail) in lines {
                if self.last_phase.get(&name) != Some(&phase) {
                    eprintln!("  {name:<16} {phase:<12} {detail}");
                    self.last_phase.insert(name, phase);
                }
            }
        }
    }

    fn clear(&mut self) {
        if self.tty && self.drawn_lines > 0 {
            eprint!("\x1b[{}A\x1b[J", self.drawn_lines);
            self.drawn_lines = 0;
        }
    }

    pub fn finish(&mut self) {
        self.drawn_lines = 0;
    }
}

fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// (entrant, phase, detail) for one entrant.
fn line(e: &Entrant, hours: f64, live: &Live) -> (String, String, String) {
    let allotted = clock(hours * 3600.0);
    let name = e.name.clone();
    let strategy = e.strategy.clone().unwrap_or_else(|| "-".into());
    let train_id = e.workload_id(WorkKind::Train);
    let eval_id = e.workload_id(WorkKind::Evaluate);
    if let Some((elapsed, progress)) = live.running.get(&train_id) {
        let loss = match progress {
            Some((step, total, Some(loss))) => format!("step {step}/{total}  loss {loss:.4}"),
            Some((step, total, None)) => format!("step {step}/{total}"),
            None => "starting".into(),
        };
        return (name, "training".into(), format!("{strategy:<18} {} / {allotted}  {loss}", clock(*elapsed)));
    }
    if let Some((elapsed, _)) = live.running.get(&eval_id) {
        return (name, "evaluating".into(), format!("{strategy:<18} {}", clock(*elapsed)));
    }
    let train_loss = match e.training.output() {
        Some(WorkOutput::Trained(t)) => t.final_train_loss.map(|l| format!("train loss {l:.4}")).unwrap_or_default(),
        _ => String::new(),
    };
    let (phase, detail) = match (&e.training, &e.evaluation) {
        (Work::Failed { reason, .. }, _) => ("failed".to_string(), reason.clone()),
        (_, Work::Failed { reason, .. }) => ("failed".to_string(), reason.clone()),
        (_, Work::Succeeded { output: WorkOutput::Evaluated(r), .. }) => match r.failure_reason() {
            None => {
                let losses = [r.test_loss, r.synth_loss, r.text_guided_loss, r.no_text_loss];
                let shown: Vec<String> = losses.iter().flatten().map(|l| format!("{l:.4}")).collect();
                ("evaluated".to_string(), format!("losses {}  {train_loss}", shown.join(" / ")))
            }
            Some(why) => ("rejected".to_string(), why),
        },
        (Work::Succeeded { .. }, _) if live.queued.contains(&eval_id) => {
            ("trained".to_string(), format!("{train_loss}  evaluation queued"))
        }
        _ if live.queued.contains(&train_id) || live.queued.contains(&eval_id) => ("queued".to_string(), String::new()),
        (Work::Succeeded { .. }, _) => ("trained".to_string(), train_loss),
        _ => ("waiting".to_string(), String::new()),
    };
    (name, phase, format!("{strategy:<18} {detail}"))
}

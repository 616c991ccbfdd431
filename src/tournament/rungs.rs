//! Successive halving across miners (`spec.halving`) in the lifecycle: the slice each miner
//! trains in its rung, and the cut at the end of a rung. See [`crate::mechanism::halving`].
//!
//! A rung is over when every miner still in the field has a terminal evaluation. The scored
//! ones are ordered by the mechanism's weighted loss (then by name); the best
//! ⌈field/η⌉ continue: their finished rung goes into [`Entrant::rungs`] and their training,
//! seal and evaluation start again in the next rung, the training resuming from the output
//! of the previous one. The others keep their last evaluation as their result and are marked
//! [`Entrant::eliminated_after`]; the record ranks them below the survivors.

use super::observe::{WorkKind, WorkloadId};
use super::outcome::outcome;
use super::state::{Entrant, Role, RungResult, TaskState, Work};
use crate::api::task::TaskSpec;
use crate::mechanism::MechanismConfig;
use crate::mechanism::halving::{Rung, plan};
use crate::mechanism::scoring::weighted_loss;

/// The rungs of this task's plan; empty without `spec.halving` or before selection.
pub fn task_plan(spec: &TaskSpec, state: &TaskState) -> Vec<Rung> {
    let (Some(halving), Some(hours)) = (spec.halving, state.hours) else { return Vec::new() };
    let miners = state.entrants.iter().filter(|e| e.role == Role::Miner).count();
    plan(halving, miners, hours)
}

/// Hours `entrant` trains in its current rung: its slice for a miner under halving, else
/// the whole allotment (the baseline reference always trains the whole allotment at once).
pub fn slice_hours(spec: &TaskSpec, state: &TaskState, entrant: &Entrant) -> f64 {
    let hours = state.hours.unwrap_or(0.0);
    if entrant.role != Role::Miner {
        return hours;
    }
    task_plan(spec, state).get(entrant.rung as usize).map_or(hours, |r| r.hours)
}

/// What the cut at the end of a rung decided, for the user.
pub struct Cut {
    /// Indices into `state.entrants` of the miners that continue.
    pub survivors: Vec<usize>,
    pub message: String,
}

/// Ends the current rung when it is over and a next one is planned; `None` otherwise.
pub fn cut(config: &MechanismConfig, spec: &TaskSpec, state: &mut TaskState) -> Option<Cut> {
    let rungs = task_plan(spec, state);
    let rung = state.rung;
    let next = rungs.get(rung as usize + 1)?;
    let field: Vec<usize> = (0..state.entrants.len())
        .filter(|&i| {
            let e = &state.entrants[i];
            e.role == Role::Miner && e.rung == rung && e.eliminated_after.is_none()
        })
        .collect();
    if !field.iter().all(|&i| state.entrants[i].evaluation.is_terminal()) {
        return None;
    }
    let mut scored: Vec<(usize, f64)> = field
        .iter()
        .filter_map(|&i| {
            let scores = outcome(&state.entrants[i]).scores?;
            let pair = if spec.task_type.is_text() {
                (scores.test_loss, scores.synth_loss)
            } else {
                (scores.text_guided_loss, scores.no_text_loss)
            };
            Some((i, weighted_loss(config, spec.task_type, pair)?))
        })
        .collect();
    if scored.is_empty() {
        return None; // nobody to continue: the task ends with what it has
    }
    scored.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| state.entrants[a.0].name.cmp(&state.entrants[b.0].name)));
    let keep = next.miners.min(scored.len());
    let hours = rungs[rung as usize].hours;
    let mut survivors = Vec::new();
    let mut cut_names = Vec::new();
    for (place, &(i, loss)) in scored.iter().enumerate() {
        let entrant = &mut state.entrants[i];
        if place >= keep {
            entrant.eliminated_after = Some(rung);
            cut_names.push(format!("{} ({loss:.4})", entrant.name));
            continue;
        }
        let attempt = entrant.training.attempt();
        let training = WorkloadId::new(WorkKind::Train, &entrant.name, attempt).at_rung(rung);
        entrant.rungs.push(RungResult { rung, training, hours, weighted_loss: loss });
        entrant.rung = rung + 1;
        entrant.training = Work::Waiting;
        entrant.seal = Work::Waiting;
        entrant.evaluation = Work::Waiting;
        survivors.push(i);
    }
    state.rung = rung + 1;
    let names: Vec<String> =
        scored[..keep].iter().map(|&(i, loss)| format!("{} ({loss:.4})", state.entrants[i].name)).collect();
    let message = format!(
        "rung {} of {} done: {} continue for {:.3} h from their checkpoints; cut: {}",
        rung + 1,
        rungs.len(),
        names.join(", "),
        next.hours,
        if cut_names.is_empty() { "none".to_string() } else { cut_names.join(", ") }
    );
    Some(Cut { survivors, message })
}

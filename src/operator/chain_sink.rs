//! The Leaderboard's chain sink (`spec.sinks.chain`): its weights to a Bittensor subnet as the
//! validator's `set_mechanism_weights`, through the code `gradients weights push --endpoint`
//! uses (`crate::chain`). Deciding is pure (`prepare`, `due`, `decide`, `record`); `push` is
//! the I/O: the key Secret, the node, the submission.
//!
//! The chain is the only memory of when weights were last set: every decision to send reads
//! `LastUpdate` and `WeightsSetRateLimit` first, so a restarted operator or a new leader
//! inside the window sends nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::context::Context;
use super::error::Error;
use crate::api::Leaderboard;
use crate::api::conditions::Observed;
use crate::api::leaderboard::{ChainMode, ChainPush, ChainSink, ChainSinkStatus, Standing, UnpaidMiner};
use crate::chain::keyfile::{self, Hotkey};
use crate::chain::node::{Node, NodeError, Receipt, Snapshot};
use crate::chain::push::{self, ChainParams, Plan};
use crate::chain::ss58;
use crate::chain::tlock::{self, TimelockedCommit, TlockError};

/// The condition this sink owns.
pub const CONDITION: &str = "ChainSynced";
/// Pushes kept in status.
pub const HISTORY: usize = 5;
/// Subtensor's target block time.
pub const BLOCK_TIME: Duration = Duration::from_secs(12);
/// After the pool refused a push (nothing included, nothing paid): try again this much later.
pub const RETRY_REFUSED: Duration = Duration::from_secs(60);
/// After an included call failed (fees paid, e.g. no validator permit): this much later.
pub const RETRY_FAILED: Duration = Duration::from_secs(3600);
/// A key Secret that is missing or malformed is read again this often (Secrets are not watched).
pub const RETRY_KEY: Duration = Duration::from_secs(60);
/// What the chain refuses for a reason the operator cannot fix (the validator not registered,
/// commit-reveal on) is looked at again this often.
pub const RETRY_BLOCKED: Duration = Duration::from_secs(300);
/// Connecting and reading the subnet.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Submitting and waiting for finality (a few blocks on a live chain).
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(300);

/// The `outcome` label of `gradients_chain_push_total`: every decision taken while a push is
/// due, bounded to these.
pub const OUTCOMES: [&str; 9] = [
    "success",
    "on_chain",
    "dispatch_failed",
    "pool_refused",
    "node_error",
    "rate_limited",
    "key_unavailable",
    "blocked",
    "dry_run",
];

/// What the sink is asked to put on the chain, before the chain is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// (miner, leaderboard weight) of the miners with a usable hotkey and of the rest (they
    /// get no weight: `push::plan` leaves miners without a hotkey out).
    pub standings: Vec<(String, f64)>,
    /// Miner → SS58 hotkey, for usable hotkeys only.
    pub hotkeys: BTreeMap<String, String>,
    /// Miners without a usable hotkey.
    pub unpaid: Vec<UnpaidMiner>,
    /// Changes when anything the chain would get changes.
    pub digest: String,
}

fn unpaid(miner: &str, hotkey: Option<&str>, reason: &str) -> UnpaidMiner {
    UnpaidMiner { miner: miner.to_string(), hotkey: hotkey.map(str::to_string), reason: reason.to_string() }
}

/// From the standings and the Miners' `spec.hotkey` (miner name → hotkey, absent when the
/// Miner has none or does not exist). A hotkey that is not SS58, or that two miners share,
/// pays neither: it would split or steal a uid's weight.
pub fn prepare(standings: &[Standing], hotkeys: &BTreeMap<String, Option<String>>, sink: &ChainSink) -> Desired {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for standing in standings {
        if let Some(Some(hotkey)) = hotkeys.get(&standing.miner) {
            *count.entry(hotkey.as_str()).or_default() += 1;
        }
    }
    let mut usable = BTreeMap::new();
    let mut without = Vec::new();
    for standing in standings {
        let miner = standing.miner.as_str();
        match hotkeys.get(miner).cloned().flatten() {
            None => without.push(unpaid(miner, None, "NoHotkey")),
            Some(hotkey) if ss58::check(&hotkey).is_err() => {
                without.push(unpaid(miner, Some(&hotkey), "InvalidHotkey"))
            }
            Some(hotkey) if count.get(hotkey.as_str()).copied().unwrap_or(0) > 1 => {
                without.push(unpaid(miner, Some(&hotkey), "SharedHotkey"))
            }
            Some(hotkey) => {
                usable.insert(miner.to_string(), hotkey);
            }
        }
    }
    let target = json!({
        "netuid": sink.netuid,
        "mechanismId": sink.mechanism_id,
        "versionKey": sink.version_key,
        "mode": sink.mode.as_str(),
        "miners": standings.iter().map(|s| json!([s.miner, s.weight_u16, usable.get(&s.miner)])).collect::<Vec<_>>(),
    });
    let digest = Sha256::digest(target.to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    Desired {
        standings: standings.iter().map(|s| (s.miner.clone(), s.weight)).collect(),
        hotkeys: usable,
        unpaid: without,
        digest,
    }
}

/// Whether the chain must be asked at all.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    /// The chain already has it; with a re-push period, look again within `recheck`.
    UpToDate {
        recheck: Option<Duration>,
    },
    /// The last push of the same weights was refused or failed: not before `until`, `retry`
    /// from now.
    Hold {
        until: DateTime<Utc>,
        retry: Duration,
        outcome: String,
    },
    /// Refused without reading the chain (the mode cannot be served).
    Blocked {
        reason: &'static str,
        message: String,
    },
    Push,
}

/// Pure: is a push due at `now`? With `repushEveryBlocks`, the chain is read again once that
/// many blocks (at 12 s) have passed since the newest push the chain took; the chain's
/// `LastUpdate` then decides (`decide`).
pub fn due(previous: &ChainSinkStatus, desired: &Desired, sink: &ChainSink, now: DateTime<Utc>) -> Due {
    if previous.synced_digest.as_deref() == Some(desired.digest.as_str()) {
        let Some(blocks) = sink.repush_every_blocks else { return Due::UpToDate { recheck: None } };
        let taken = previous.pushes.iter().find(|p| p.digest == desired.digest && taken_by_chain(&p.outcome));
        let Some(taken) = taken else { return Due::Push };
        let since = (now - taken.at).to_std().unwrap_or_default();
        let period = blocks_time(blocks);
        return if since >= period { Due::Push } else { Due::UpToDate { recheck: Some(period - since) } };
    }
    if let Some(last) = previous.pushes.first().filter(|p| p.digest == desired.digest) {
        let wait = if last.outcome.starts_with("Refused") {
            Some(RETRY_REFUSED)
        } else if last.outcome.starts_with("Failed") {
            Some(RETRY_FAILED)
        } else {
            None
        };
        if let Some(wait) = wait {
            let since = (now - last.at).to_std().unwrap_or_default();
            if since < wait {
                let until = last.at + chrono::Duration::from_std(wait).unwrap_or_default();
                return Due::Hold { until, retry: wait - since, outcome: last.outcome.clone() };
            }
        }
    }
    Due::Push
}

const DRY_RUN: &str = "dry run: the call is in status.chain.pushes, nothing was sent";

/// Whether a recorded outcome means the chain holds that push's vector.
fn taken_by_chain(outcome: &str) -> bool {
    outcome == "ExtrinsicSuccess" || outcome == ON_CHAIN
}

/// The outcome recorded when the chain already held the vector: nothing was sent.
pub const ON_CHAIN: &str = "OnChain";

/// What to do once the chain is read.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Send(Box<Plan>),
    /// The chain's `Weights` already hold the plan's vector for the validator (a push whose
    /// status write was lost, or set by another tool): nothing to send. `block` is its
    /// `LastUpdate`; with a re-push period, look again within `recheck`.
    OnChain {
        plan: Box<Plan>,
        block: u64,
        recheck: Option<Duration>,
    },
    DryRun(Box<Plan>),
    /// Inside the rate-limit window: the chain accepts from block `from` (`blocks` after the next).
    Wait {
        from: u64,
        blocks: u64,
    },
    Blocked {
        reason: &'static str,
        message: String,
    },
}

/// Pure: from the chain's state to the step, and every miner the chain pays nothing.
pub fn decide(sink: &ChainSink, desired: &Desired, chain: &Snapshot, validator: &str) -> (Step, Vec<UnpaidMiner>) {
    let mut without = desired.unpaid.clone();
    let commit_reveal = chain.params.commit_reveal_weights_enabled == Some(true);
    let params = ChainParams {
        weights_version_key: sink.version_key.or(chain.params.weights_version_key),
        // Commit-reveal is decided here, by mode: the plan is the same vector either way.
        commit_reveal_weights_enabled: Some(false),
        ..chain.params
    };
    let plan =
        match push::plan(&desired.standings, &desired.hotkeys, &chain.uids, sink.netuid, sink.mechanism_id, params) {
            Ok(plan) => plan,
            Err(e) => return (Step::Blocked { reason: "InvalidPlan", message: e.to_string() }, without),
        };
    for miner in &plan.unregistered {
        without.push(unpaid(miner, desired.hotkeys.get(miner).map(String::as_str), "NotRegistered"));
    }
    without.sort();
    let step = if sink.mode == ChainMode::DryRun {
        Step::DryRun(Box::new(plan))
    } else if chain.validator_uid.is_none() {
        let message = format!("the validator's hotkey {validator} is not registered on netuid {}", sink.netuid);
        Step::Blocked { reason: "ValidatorNotRegistered", message }
    } else if let Some(recheck) = held_on_chain(sink, &plan, chain) {
        Step::OnChain { plan: Box::new(plan), block: chain.last_update, recheck }
    } else if commit_reveal && sink.mode == ChainMode::Set {
        let message = format!(
            "CommitRevealWeightsEnabled is true on netuid {}: the chain refuses a plain set there (mode set); \
             mode auto or commit-reveal commits instead",
            sink.netuid
        );
        Step::Blocked { reason: "CommitRevealEnabled", message }
    } else if !commit_reveal && sink.mode == ChainMode::CommitReveal {
        let message = format!(
            "CommitRevealWeightsEnabled is false on netuid {}: the chain refuses a commit there (mode commit-reveal); \
             mode auto or set sets instead",
            sink.netuid
        );
        Step::Blocked { reason: "CommitRevealDisabled", message }
    } else {
        match push::blocks_until_allowed(chain.last_update, chain.weights_set_rate_limit, chain.block) {
            0 => Step::Send(Box::new(plan)),
            blocks => Step::Wait { from: chain.last_update + chain.weights_set_rate_limit, blocks },
        }
    };
    (step, without)
}

/// Pure: `Some(recheck)` when the chain's `Weights` row for the validator is the plan's vector
/// and no re-push is due yet. The pallet stores the call's pairs in call order, max-upscaled;
/// the SDK's conversion already makes the largest 65535, so they are stored as sent.
fn held_on_chain(sink: &ChainSink, plan: &Plan, chain: &Snapshot) -> Option<Option<Duration>> {
    let args = &plan.call.args;
    let planned: Vec<(u16, u16)> = args.dests.iter().copied().zip(args.weights.iter().copied()).collect();
    if args.dests.is_empty() || chain.weights != planned {
        return None;
    }
    match sink.repush_every_blocks {
        None => Some(None),
        Some(blocks) => {
            let next = chain.last_update.saturating_add(blocks);
            (chain.block < next).then(|| Some(wait_time(next - chain.block - 1)))
        }
    }
}

fn blocks_time(blocks: u64) -> Duration {
    BLOCK_TIME * u32::try_from(blocks).unwrap_or(u32::MAX)
}

/// When to look again while waiting `blocks` after the next block.
pub fn wait_time(blocks: u64) -> Duration {
    blocks_time(blocks.saturating_add(1))
}

/// A push as status records it.
pub fn push_record(
    plan: &Plan,
    digest: &str,
    at: DateTime<Utc>,
    outcome: String,
    message: Option<String>,
) -> ChainPush {
    let args = &plan.call.args;
    ChainPush {
        at,
        digest: digest.to_string(),
        outcome,
        message,
        extrinsic_hash: None,
        block: None,
        block_hash: None,
        netuid: args.netuid,
        mechanism_id: args.mecid,
        version_key: args.version_key,
        dests: args.dests.clone(),
        weights: args.weights.clone(),
        reveal_round: None,
    }
}

/// Pure: `previous` with `push` added (newest first, at most [`HISTORY`]), and the digest the
/// chain now holds when it was accepted (or, in dry-run mode, computed).
pub fn record(previous: &ChainSinkStatus, push: ChainPush) -> ChainSinkStatus {
    let mut status = previous.clone();
    if taken_by_chain(&push.outcome) || push.outcome == "DryRun" {
        status.synced_digest = Some(push.digest.clone());
    }
    status.pushes.insert(0, push);
    status.pushes.truncate(HISTORY);
    status
}

/// What one reconcile of the sink yields for the Leaderboard controller.
#[derive(Debug)]
pub struct Outcome {
    pub status: ChainSinkStatus,
    pub condition: Observed,
    /// Look again within this (the controller requeues at the earliest of its sinks).
    pub requeue: Option<Duration>,
    /// A transient error (the node unreachable, an answer lost): retried with the controller's
    /// backoff once the status is written.
    pub error: Option<Error>,
    /// (warning, reason, note) for an Event, when something happened worth one.
    pub event: Option<(bool, &'static str, String)>,
    /// The label of `gradients_chain_push_total`, when a push was due.
    pub metric: Option<&'static str>,
}

impl Outcome {
    fn new(status: ChainSinkStatus, condition: Observed) -> Outcome {
        Outcome { status, condition, requeue: None, error: None, event: None, metric: None }
    }
}

fn synced(status: bool, reason: &'static str, message: impl Into<String>) -> Observed {
    Observed::new(CONDITION, Some(status), reason, message)
}

/// Reads the sink's key Secret: `Secret NS/NAME key KEY` names it in every error (never its bytes).
async fn hotkey(ctx: &Context, namespace: &str, sink: &ChainSink) -> Result<Hotkey, String> {
    let reference = &sink.hotkey_secret_ref;
    let named = format!("Secret {namespace}/{} key {:?}", reference.name, reference.key);
    let secret = match Api::<Secret>::namespaced(ctx.client.clone(), namespace).get_opt(&reference.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Err(format!("{named}: the Secret does not exist")),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return Err(format!(
                "{named}: the operator may not read it (list it in the chart's chainSink.hotkeySecrets): {}",
                status.message
            ));
        }
        Err(e) => return Err(format!("{named}: cannot read it: {e}")),
    };
    let bytes =
        secret.data.as_ref().and_then(|d| d.get(&reference.key)).map(|b| b.0.clone()).or_else(|| {
            secret.string_data.as_ref().and_then(|d| d.get(&reference.key)).map(|s| s.clone().into_bytes())
        });
    let Some(bytes) = bytes else {
        return Err(format!("{named}: the Secret has no such key"));
    };
    keyfile::parse(&named, &bytes).map_err(|e| e.to_string())
}

/// One reconcile of the chain sink for `board`, whose standings are `standings`.
pub async fn push(
    ctx: &Context,
    board: &Leaderboard,
    sink: &ChainSink,
    standings: &[Standing],
    previous: &ChainSinkStatus,
    now: DateTime<Utc>,
) -> Outcome {
    let namespace = board.namespace().unwrap_or_default();
    if standings.is_empty() {
        return Outcome::new(
            previous.clone(),
            Observed::new(CONDITION, None, "NoWeights", "no miner has a standing yet"),
        );
    }
    let hotkeys = miner_hotkeys(ctx, &namespace);
    let desired = prepare(standings, &hotkeys, sink);
    match due(previous, &desired, sink, now) {
        Due::UpToDate { recheck } => {
            let (reason, message) = match sink.mode {
                ChainMode::DryRun => ("DryRun", DRY_RUN.to_string()),
                _ => ("Pushed", pushed_message(previous)),
            };
            let mut outcome = Outcome::new(previous.clone(), synced(sink.mode != ChainMode::DryRun, reason, message));
            outcome.requeue = recheck;
            return outcome;
        }
        Due::Hold { until, retry, outcome } => {
            // No clock in the message: a status that changes by itself would wake the controller.
            let message = format!("the last push of these weights: {outcome}; trying again at {}", until.to_rfc3339());
            let mut held = Outcome::new(previous.clone(), synced(false, "RetryLater", message));
            held.requeue = Some(retry);
            return held;
        }
        Due::Blocked { reason, message } => {
            let mut blocked = Outcome::new(previous.clone(), synced(false, reason, message.clone()));
            blocked.requeue = Some(RETRY_BLOCKED);
            blocked.metric = Some("blocked");
            blocked.event = Some((true, reason, message));
            return blocked;
        }
        Due::Push => {}
    }
    // The key before the chain: a missing or malformed Secret sends nothing and reads nothing.
    let key = match hotkey(ctx, &namespace, sink).await {
        Ok(key) => key,
        Err(message) => {
            let mut outcome = Outcome::new(previous.clone(), synced(false, "KeyUnavailable", message.clone()));
            outcome.requeue = Some(RETRY_KEY);
            outcome.metric = Some("key_unavailable");
            outcome.event = Some((true, "ChainKeyUnavailable", message));
            return outcome;
        }
    };
    let mut status = ChainSinkStatus { validator: Some(key.ss58.clone()), ..previous.clone() };
    let node_error = |status: ChainSinkStatus, e: NodeError| {
        let message = match e {
            NodeError::Connect { .. } => format!("{e}; nothing sent, retrying"),
            _ => format!("{}: {e}; nothing sent, retrying", sink.endpoint),
        };
        let mut outcome = Outcome::new(status, synced(false, "NodeError", message.clone()));
        outcome.metric = Some("node_error");
        outcome.error = Some(Error::Sink { sink: "chain".into(), message });
        outcome
    };
    let read = async {
        let node = Node::connect(&sink.endpoint).await?;
        let miners: Vec<String> = desired.hotkeys.values().cloned().collect();
        let snapshot = node.snapshot(sink.netuid, sink.mechanism_id, &key.ss58, &miners).await?;
        Ok::<_, NodeError>((node, snapshot))
    };
    let (node, snapshot) = match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return node_error(status, e),
        Err(_) => return node_error(status, timed_out(&sink.endpoint, READ_TIMEOUT)),
    };
    let (step, without) = decide(sink, &desired, &snapshot, &key.ss58);
    status.unpaid = without;
    let plan = match step {
        Step::Blocked { reason, message } => {
            let mut outcome = Outcome::new(status, synced(false, reason, message.clone()));
            outcome.requeue = Some(RETRY_BLOCKED);
            outcome.metric = Some("blocked");
            outcome.event = Some((true, reason, message));
            return outcome;
        }
        Step::Wait { from, blocks, .. } => {
            // Not the head block: the message must not change while the chain advances.
            let message = format!(
                "weights were last set at block {}, the rate limit is {} blocks: nothing sent before block {from}",
                snapshot.last_update, snapshot.weights_set_rate_limit
            );
            let mut outcome = Outcome::new(status, synced(false, "RateLimited", message));
            outcome.requeue = Some(wait_time(blocks));
            outcome.metric = Some("rate_limited");
            return outcome;
        }
        Step::DryRun(plan) => {
            let entry = push_record(&plan, &desired.digest, now, "DryRun".into(), None);
            let mut outcome = Outcome::new(record(&status, entry), synced(false, "DryRun", DRY_RUN));
            outcome.metric = Some("dry_run");
            outcome.event = Some((false, "ChainDryRun", summary(&plan, "computed, not sent")));
            return outcome;
        }
        Step::OnChain { plan, block, recheck } => {
            return on_chain(status, previous, &plan, &desired.digest, block, recheck, now);
        }
        Step::Send(plan) => plan,
    };
    // On a commit-reveal subnet (decide refused the modes that do not fit): the timelocked commit.
    let commit = if snapshot.params.commit_reveal_weights_enabled == Some(true) {
        match timelocked(&plan, &key, &snapshot, now) {
            Ok(commit) => Some(commit),
            Err(e) => {
                let mut outcome = Outcome::new(status, synced(false, "CommitNotBuilt", e.to_string()));
                outcome.requeue = Some(RETRY_BLOCKED);
                outcome.metric = Some("blocked");
                return outcome;
            }
        }
    } else {
        None
    };
    let submitted = async {
        match &commit {
            Some(commit) => node.commit_timelocked(&key, commit).await,
            None => node.set_mechanism_weights(&key, &plan.call.args).await,
        }
    };
    let result = match tokio::time::timeout(SUBMIT_TIMEOUT, submitted).await {
        Ok(result) => result,
        Err(_) => Err(timed_out(&sink.endpoint, SUBMIT_TIMEOUT)),
    };
    let reveal_round = commit.as_ref().map(|c| c.reveal_round);
    match result {
        Ok(receipt) => success(status, &plan, &desired.digest, receipt, reveal_round, now),
        Err(NodeError::Refused { name, detail, .. }) => {
            let entry = push_record(&plan, &desired.digest, now, format!("Refused: {name}"), Some(detail.clone()));
            let message = format!("the node refused the extrinsic: {name} ({detail}); trying again later");
            let mut outcome = Outcome::new(record(&status, entry), synced(false, "Refused", message.clone()));
            outcome.requeue = Some(RETRY_REFUSED);
            outcome.metric = Some("pool_refused");
            outcome.event = Some((true, "ChainPushRefused", message));
            outcome
        }
        Err(NodeError::Failed { block, error }) => {
            let message = format!("the extrinsic was included in block {block} but failed: {error}");
            let mut entry = push_record(&plan, &desired.digest, now, format!("Failed: {error}"), None);
            entry.block = Some(block);
            let mut outcome = Outcome::new(record(&status, entry), synced(false, "DispatchFailed", message.clone()));
            outcome.requeue = Some(RETRY_FAILED);
            outcome.metric = Some("dispatch_failed");
            outcome.event = Some((true, "ChainPushFailed", message));
            outcome
        }
        Err(e) => node_error(status, e),
    }
}

/// The commit of `plan`'s weights, to open at the pulse the chain's epoch schedule says.
fn timelocked(plan: &Plan, key: &Hotkey, chain: &Snapshot, now: DateTime<Utc>) -> Result<TimelockedCommit, TlockError> {
    let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or_default();
    tlock::for_chain(&plan.call.args, &key.keypair.public_key().0, chain, now_ms)
}

fn timed_out(endpoint: &str, limit: Duration) -> NodeError {
    NodeError::Connect { endpoint: endpoint.to_string(), message: format!("no answer within {}s", limit.as_secs()) }
}

fn summary(plan: &Plan, what: &str) -> String {
    let args = &plan.call.args;
    format!(
        "set_mechanism_weights netuid {} mechanism {} version key {}: {} uids {what}",
        args.netuid,
        args.mecid,
        args.version_key,
        args.dests.len()
    )
}

/// The chain already holds the vector: recorded once (a lost status write, another tool's set),
/// and not again while a re-push waits for its block.
fn on_chain(
    status: ChainSinkStatus,
    previous: &ChainSinkStatus,
    plan: &Plan,
    digest: &str,
    block: u64,
    recheck: Option<Duration>,
    now: DateTime<Utc>,
) -> Outcome {
    if previous.synced_digest.as_deref() == Some(digest) {
        let mut outcome = Outcome::new(status, synced(true, "Pushed", pushed_message(previous)));
        outcome.requeue = recheck;
        return outcome;
    }
    let note = format!("the chain's Weights already hold this vector (LastUpdate {block}): recorded, nothing sent");
    let mut entry = push_record(plan, digest, now, ON_CHAIN.into(), Some(note.clone()));
    entry.block = Some(block);
    let status = record(&status, entry);
    let mut outcome = Outcome::new(status.clone(), synced(true, "Pushed", pushed_message(&status)));
    outcome.requeue = recheck;
    outcome.metric = Some("on_chain");
    outcome.event = Some((false, "ChainWeightsOnChain", format!("{}: {note}", summary(plan, "held"))));
    outcome
}

fn success(
    status: ChainSinkStatus,
    plan: &Plan,
    digest: &str,
    receipt: Receipt,
    reveal_round: Option<u64>,
    now: DateTime<Utc>,
) -> Outcome {
    let mut entry = push_record(plan, digest, now, "ExtrinsicSuccess".into(), None);
    entry.extrinsic_hash = Some(receipt.extrinsic_hash.clone());
    entry.block = Some(receipt.block);
    entry.block_hash = Some(receipt.block_hash.clone());
    entry.reveal_round = reveal_round;
    let what = match reveal_round {
        Some(round) => format!("committed (timelocked to drand round {round})"),
        None => "set".to_string(),
    };
    let note = format!("{} in block {} ({})", summary(plan, &what), receipt.block, receipt.extrinsic_hash);
    let status = record(&status, entry);
    let message = pushed_message(&status);
    let mut outcome = Outcome::new(status, synced(true, "Pushed", message));
    outcome.metric = Some("success");
    outcome.event = Some((false, "ChainWeightsSet", note));
    outcome
}

/// Miner name → its `spec.hotkey` (None without one), for the namespace's Miners.
fn miner_hotkeys(ctx: &Context, namespace: &str) -> BTreeMap<String, Option<String>> {
    ctx.caches.all_miners(namespace).into_iter().map(|m| (m.name_any(), m.spec.hotkey.clone())).collect()
}

/// The condition's message once the chain holds the weights: the same on every reconcile.
fn pushed_message(status: &ChainSinkStatus) -> String {
    match status.pushes.iter().find(|p| taken_by_chain(&p.outcome) && Some(&p.digest) == status.synced_digest.as_ref())
    {
        Some(p) => match p.reveal_round {
            Some(round) => format!(
                "the current weights are committed: {} in block {}, revealed by the chain at drand round {round}",
                p.outcome,
                p.block.unwrap_or(0)
            ),
            None => format!("the chain holds the current weights: {} in block {}", p.outcome, p.block.unwrap_or(0)),
        },
        None => "the chain holds the current weights".to_string(),
    }
}

/// The timestamp of the newest accepted push (for the last-push gauge).
pub fn last_success(status: &ChainSinkStatus) -> Option<DateTime<Utc>> {
    status.pushes.iter().find(|p| p.outcome == "ExtrinsicSuccess").map(|p| p.at)
}

#[cfg(test)]
#[path = "chain_sink_tests.rs"]
mod tests;

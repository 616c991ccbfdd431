//! `gradients weights push --endpoint`: read the subnet from the chain, decide, sign, submit,
//! and print what happened (`PushReport`). Deciding is `push.rs` (pure); this is the I/O.

use std::process::ExitCode;

use serde::Serialize;

use super::cli::{PushArgs, call_hex, fail, print_json, standings, warn_unpaid};
use super::keyfile::{self, Hotkey};
use super::node::{Node, NodeError, Receipt, Snapshot};
use super::push::{self, ChainParams, Plan, PushError};
use super::tlock::{self, TimelockedCommit, TlockError};

/// What one push did, printed as JSON (and, for the operator, recorded in status).
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// Whether an extrinsic was submitted.
    pub sent: bool,
    /// `ExtrinsicSuccess`, `RateLimited` (nothing sent), `DryRun`, `Refused: <name>` (the pool),
    /// `Failed: <Pallet::Error>` (included but failed).
    pub outcome: String,
    /// Why nothing was sent, or what the chain said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    /// The validator's hotkey.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validator: Option<String>,
    /// The subnet as read from the chain before deciding.
    pub chain: Snapshot,
    pub plan: Plan,
    /// On a commit-reveal subnet: the timelocked commit of `plan`'s weights (sent instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<TimelockedCommit>,
}

enum Failure {
    Input(PushError),
    Commit(TlockError),
    Key(keyfile::KeyError),
    Node(NodeError),
}

impl From<PushError> for Failure {
    fn from(e: PushError) -> Self {
        Failure::Input(e)
    }
}
impl From<NodeError> for Failure {
    fn from(e: NodeError) -> Self {
        Failure::Node(e)
    }
}

pub fn main(args: &PushArgs, endpoint: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}"), 3),
    };
    match runtime.block_on(push_online(args, endpoint)) {
        Ok(report) => {
            print_json(&report);
            warn_unpaid(&report.plan);
            match report.outcome.as_str() {
                "ExtrinsicSuccess" | "DryRun" => ExitCode::SUCCESS,
                "RateLimited" => {
                    eprintln!("nothing sent: {}", report.reason.as_deref().unwrap_or_default());
                    ExitCode::SUCCESS
                }
                _ => {
                    eprintln!("error: {}", report.reason.as_deref().unwrap_or(&report.outcome));
                    ExitCode::from(1)
                }
            }
        }
        Err(Failure::Input(e @ PushError::CommitReveal { .. })) => fail(&e.to_string(), 1),
        Err(Failure::Input(e)) => fail(&e.to_string(), 2),
        Err(Failure::Key(e)) => fail(&format!("{e}; nothing sent"), 2),
        Err(Failure::Commit(e)) => fail(&format!("{e}; nothing sent"), 1),
        Err(Failure::Node(e)) => fail(&format!("{e}; nothing sent"), 3),
    }
}

async fn push_online(args: &PushArgs, endpoint: &str) -> Result<PushReport, Failure> {
    let (standings, hotkeys) = standings(args)?;
    // The key is read before the chain is touched: a bad key file sends nothing.
    let key: Option<Hotkey> = match &args.hotkey_file {
        Some(path) => Some(keyfile::load(path).map_err(Failure::Key)?),
        None if args.dry_run => None,
        None => {
            return Err(Failure::Input(PushError::File {
                file: "--hotkey-file".into(),
                message: "required to submit (or pass --dry-run)".into(),
            }));
        }
    };
    let node = Node::connect(endpoint).await?;
    let miners: Vec<String> = hotkeys.values().cloned().collect();
    let validator = key.as_ref().map(|k| k.ss58.clone());
    let chain = node.snapshot(args.netuid, args.mechanism_id, validator.as_deref().unwrap_or(""), &miners).await?;
    let commit_reveal = chain.params.commit_reveal_weights_enabled == Some(true);
    // A commit carries the same vector as a set: planned as one, then sealed.
    let params = ChainParams { commit_reveal_weights_enabled: Some(false), ..chain.params };
    let mut plan = push::plan(&standings, &hotkeys, &chain.uids, args.netuid, args.mechanism_id, params)?;
    plan.call_data = Some(call_hex(&plan.call.args)?);
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default();
    let commit = match &key {
        Some(key) if commit_reveal => Some(
            tlock::for_chain(&plan.call.args, &key.keypair.public_key().0, &chain, now_ms).map_err(Failure::Commit)?,
        ),
        _ => None,
    };
    let report = |outcome: &str, reason: Option<String>, receipt: Option<Receipt>| PushReport {
        sent: receipt.is_some() || outcome.starts_with("Failed"),
        outcome: outcome.to_string(),
        reason,
        receipt,
        validator: validator.clone(),
        chain: chain.clone(),
        plan: plan.clone(),
        commit: commit.clone(),
    };
    let Some(key) = key.filter(|_| !args.dry_run) else {
        return Ok(report("DryRun", None, None));
    };
    if chain.validator_uid.is_none() {
        let why = format!("the validator's hotkey {} is not registered on netuid {}", key.ss58, args.netuid);
        return Ok(report("NotRegistered", Some(why), None));
    }
    let wait = push::blocks_until_allowed(chain.last_update, chain.weights_set_rate_limit, chain.block);
    if wait > 0 {
        let why = format!(
            "weights were last set at block {}, the rate limit is {} blocks: the chain accepts new ones from block {} \
             ({wait} blocks after the next)",
            chain.last_update,
            chain.weights_set_rate_limit,
            chain.last_update + chain.weights_set_rate_limit,
        );
        return Ok(report("RateLimited", Some(why), None));
    }
    let sent = match &commit {
        Some(commit) => node.commit_timelocked(&key, commit).await,
        None => node.set_mechanism_weights(&key, &plan.call.args).await,
    };
    match sent {
        Ok(receipt) => Ok(report("ExtrinsicSuccess", None, Some(receipt))),
        Err(e @ NodeError::Refused { .. }) => {
            let NodeError::Refused { name, .. } = &e else { unreachable!() };
            Ok(report(&format!("Refused: {name}"), Some(e.to_string()), None))
        }
        Err(e @ NodeError::Failed { .. }) => {
            let NodeError::Failed { error, .. } = &e else { unreachable!() };
            Ok(report(&format!("Failed: {error}"), Some(e.to_string()), None))
        }
        Err(e) => Err(e.into()),
    }
}

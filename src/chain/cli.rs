//! `gradients weights push`: its arguments, its files and what it prints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::call_data;
use super::online;
use super::push::{self, ChainParams, PushError};
use crate::audit;
use crate::mechanism::MechanismConfig;

/// Weights for the Bittensor chain.
#[derive(Debug, Args)]
pub struct WeightsArgs {
    #[command(subcommand)]
    pub command: WeightsCommand,
}

#[derive(Debug, Subcommand)]
pub enum WeightsCommand {
    /// The weight call for a subnet, from evaluation records: with `--endpoint`, read the subnet
    /// from the chain, sign with `--hotkey-file` and submit (at most once per rate-limit window);
    /// with `--dry-run`, print the call instead.
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Evaluation records in the `gradients score` input format (`-` reads stdin); the weights
    /// are the ones `gradients score` computes from them.
    #[arg(long)]
    pub records: PathBuf,
    /// The subnet.
    #[arg(long)]
    pub netuid: u16,
    /// The subnet's mechanism (0 is the main one).
    #[arg(long, default_value_t = 0)]
    pub mechanism_id: u8,
    /// Miner name → SS58 hotkey, as a JSON object (the Miners' `spec.hotkey`).
    #[arg(long)]
    pub hotkeys: PathBuf,
    /// A subtensor node's WebSocket endpoint (`ws://` or `wss://`): the uids and parameters come
    /// from its `Uids` and storage, and the call is submitted there unless `--dry-run`.
    #[arg(long, env = "GRADIENTS_CHAIN_ENDPOINT", conflicts_with_all = ["uids", "chain_params"])]
    pub endpoint: Option<String>,
    /// The validator's hotkey file as a Bittensor wallet writes it (unencrypted JSON with
    /// `secretSeed`); required to submit.
    #[arg(long)]
    pub hotkey_file: Option<PathBuf>,
    /// Without `--endpoint`: the subnet's registrations (the chain's `Uids`): the metagraph's
    /// hotkey list, where the index is the uid, or a JSON object hotkey → uid.
    #[arg(long, required_unless_present = "endpoint")]
    pub uids: Option<PathBuf>,
    /// Without `--endpoint`: the chain's parameters for the subnet as JSON, by storage name:
    /// `SubnetworkN`, `MinAllowedWeights`, `MaxWeightsLimit`, `WeightsVersionKey`,
    /// `CommitRevealWeightsEnabled`. The flags below override it.
    #[arg(long)]
    pub chain_params: Option<PathBuf>,
    /// `SubnetworkN` (default: the length of a `--uids` list).
    #[arg(long, conflicts_with = "endpoint")]
    pub subnetwork_n: Option<u16>,
    /// `MinAllowedWeights`.
    #[arg(long, conflicts_with = "endpoint")]
    pub min_allowed_weights: Option<u16>,
    /// `MaxWeightsLimit` (65535: no limit).
    #[arg(long, conflicts_with = "endpoint")]
    pub max_weights_limit: Option<u16>,
    /// `WeightsVersionKey`: the call carries it as its version key.
    #[arg(long, conflicts_with = "endpoint")]
    pub weights_version_key: Option<u64>,
    /// Print the call instead of submitting it (required without `--endpoint`).
    #[arg(long)]
    pub dry_run: bool,
}

/// Exit codes: 0 the call is printed, accepted by the chain, or not sent because the validator's
/// rate-limit window is still open (`"sent": false`); 1 the chain refuses or would refuse it
/// (commit-reveal on, validator not registered, a pool rejection, `ExtrinsicFailed`); 2 an input
/// is invalid (a file, a flag, the hotkey file); 3 the node (unreachable, another runtime version,
/// an answer that does not decode).
pub fn main(args: WeightsArgs) -> ExitCode {
    let WeightsCommand::Push(args) = args.command;
    match &args.endpoint {
        Some(endpoint) => online::main(&args, endpoint),
        None if !args.dry_run => fail("--dry-run is required without --endpoint (there is no chain to send to)", 2),
        None => match dry_run(&args) {
            Ok(plan) => {
                print_json(&plan);
                warn_unpaid(&plan);
                ExitCode::SUCCESS
            }
            Err(e @ PushError::CommitReveal { .. }) => fail(&e.to_string(), 1),
            Err(e) => fail(&e.to_string(), 2),
        },
    }
}

pub(super) fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("error: cannot print the result: {e}"),
    }
}

pub(super) fn warn_unpaid(plan: &push::Plan) {
    for (names, why) in [(&plan.unregistered, "hotkey has no uid on the subnet"), (&plan.without_hotkey, "no hotkey")] {
        if !names.is_empty() {
            eprintln!("warning: no weight for {} ({why})", names.join(", "));
        }
    }
}

/// The leaderboard's (miner, weight) pairs, and miner name → hotkey.
pub(super) type Standings = (Vec<(String, f64)>, BTreeMap<String, String>);

/// The leaderboard from `--records`, and the miners' hotkeys.
pub(super) fn standings(args: &PushArgs) -> Result<Standings, PushError> {
    let records = read("--records", &args.records)?;
    let input = audit::parse_input(&records.1)
        .map_err(|e| PushError::File { file: records.0.clone(), message: e.to_string() })?;
    let board = crate::mechanism::leaderboard::compute(&MechanismConfig::default(), input.now, &input.tasks);
    let standings: Vec<(String, f64)> = board.miners.iter().map(|m| (m.miner.clone(), m.weight)).collect();
    let (name, text) = read("--hotkeys", &args.hotkeys)?;
    Ok((standings, push::parse_hotkeys(&name, &text)?))
}

/// The call data's hex, encoded from the bundled metadata.
pub(super) fn call_hex(args: &push::SetMechanismWeights) -> Result<String, PushError> {
    let bytes = call_data::metadata(call_data::FINNEY_METADATA)
        .and_then(|md| call_data::set_mechanism_weights(&md, args))
        .map_err(|e| PushError::File { file: "call data".into(), message: e.to_string() })?;
    Ok(format!("0x{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

fn dry_run(args: &PushArgs) -> Result<push::Plan, PushError> {
    let (standings, hotkeys) = standings(args)?;
    let uids_path = args
        .uids
        .as_deref()
        .ok_or_else(|| PushError::File { file: "--uids".into(), message: "required without --endpoint".into() })?;
    let (uids_name, text) = read("--uids", uids_path)?;
    let (uids, listed) = push::parse_uids(&uids_name, &text)?;
    let from_file = match &args.chain_params {
        Some(path) => {
            let (name, text) = read("--chain-params", path)?;
            ChainParams::parse(&name, &text)?
        }
        None => ChainParams::default(),
    };
    let flags = ChainParams {
        subnetwork_n: args.subnetwork_n,
        min_allowed_weights: args.min_allowed_weights,
        max_weights_limit: args.max_weights_limit,
        weights_version_key: args.weights_version_key,
        commit_reveal_weights_enabled: None,
    };
    let mut params = from_file.overridden_by(flags);
    match (listed, params.subnetwork_n) {
        (Some(n), Some(given)) if n != given => {
            return Err(PushError::Field {
                file: uids_name,
                field: "(document)".into(),
                message: format!("lists {n} uids but SubnetworkN is {given}"),
            });
        }
        (Some(n), None) => params.subnetwork_n = Some(n),
        _ => {}
    }
    let mut plan = push::plan(&standings, &hotkeys, &uids, args.netuid, args.mechanism_id, params)?;
    plan.call_data = Some(call_hex(&plan.call.args)?);
    Ok(plan)
}

/// The file's text, named by its flag and path in errors; `-` is stdin.
pub(super) fn read(flag: &str, path: &Path) -> Result<(String, String), PushError> {
    let name = format!("{flag} {}", path.display());
    let text =
        if path.as_os_str() == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(path) };
    match text {
        Ok(text) => Ok((name, text)),
        Err(e) => Err(PushError::File { file: name, message: e.to_string() }),
    }
}

pub(super) fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

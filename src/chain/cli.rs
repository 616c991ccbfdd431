//! `gradients weights push`: its arguments, its files and what it prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::call_data;
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
    /// The weight call for a subnet, from evaluation records (only `--dry-run` today: it prints
    /// the call as JSON; signing and submitting are not built yet).
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
    /// The subnet's registrations (the chain's `Uids`): the metagraph's hotkey list, where the
    /// index is the uid, or a JSON object hotkey → uid.
    #[arg(long)]
    pub uids: PathBuf,
    /// The chain's parameters for the subnet as JSON, by storage name: `SubnetworkN`,
    /// `MinAllowedWeights`, `MaxWeightsLimit`, `WeightsVersionKey`, `CommitRevealWeightsEnabled`.
    /// The flags below override it.
    #[arg(long)]
    pub chain_params: Option<PathBuf>,
    /// `SubnetworkN` (default: the length of a `--uids` list).
    #[arg(long)]
    pub subnetwork_n: Option<u16>,
    /// `MinAllowedWeights`.
    #[arg(long)]
    pub min_allowed_weights: Option<u16>,
    /// `MaxWeightsLimit` (65535: no limit).
    #[arg(long)]
    pub max_weights_limit: Option<u16>,
    /// `WeightsVersionKey`: the call carries it as its version key.
    #[arg(long)]
    pub weights_version_key: Option<u64>,
    /// Print the call instead of submitting it (required: submission is not built yet).
    #[arg(long)]
    pub dry_run: bool,
}

/// Exit codes: 0 the call is printed; 1 the chain would refuse it (commit-reveal is on);
/// 2 an input is invalid, or `--dry-run` is missing.
pub fn main(args: WeightsArgs) -> ExitCode {
    let WeightsCommand::Push(args) = args.command;
    if !args.dry_run {
        return fail("--dry-run is required: signing and submitting to the chain are not built yet", 2);
    }
    match dry_run(&args) {
        Ok(plan) => match serde_json::to_string_pretty(&plan) {
            Ok(json) => {
                println!("{json}");
                for (names, why) in
                    [(&plan.unregistered, "hotkey has no uid on the subnet"), (&plan.without_hotkey, "no hotkey")]
                {
                    if !names.is_empty() {
                        eprintln!("warning: no weight for {} ({why})", names.join(", "));
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("cannot encode the call: {e}"), 1),
        },
        Err(e @ PushError::CommitReveal { .. }) => fail(&e.to_string(), 1),
        Err(e) => fail(&e.to_string(), 2),
    }
}

fn dry_run(args: &PushArgs) -> Result<push::Plan, PushError> {
    let records = read("--records", &args.records)?;
    let input = audit::parse_input(&records.1)
        .map_err(|e| PushError::File { file: records.0.clone(), message: e.to_string() })?;
    let board = crate::mechanism::leaderboard::compute(&MechanismConfig::default(), input.now, &input.tasks);
    let standings: Vec<(String, f64)> = board.miners.iter().map(|m| (m.miner.clone(), m.weight)).collect();

    let (name, text) = read("--hotkeys", &args.hotkeys)?;
    let hotkeys = push::parse_hotkeys(&name, &text)?;
    let (uids_name, text) = read("--uids", &args.uids)?;
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
    let bytes = call_data::metadata(call_data::FINNEY_METADATA)
        .and_then(|md| call_data::set_mechanism_weights(&md, &plan.call.args))
        .map_err(|e| PushError::File { file: "call data".into(), message: e.to_string() })?;
    plan.call_data = Some(format!("0x{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    Ok(plan)
}

/// The file's text, named by its flag and path in errors; `-` is stdin.
fn read(flag: &str, path: &Path) -> Result<(String, String), PushError> {
    let name = format!("{flag} {}", path.display());
    let text =
        if path.as_os_str() == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(path) };
    match text {
        Ok(text) => Ok((name, text)),
        Err(e) => Err(PushError::File { file: name, message: e.to_string() }),
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

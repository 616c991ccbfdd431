//! `SubtensorModule`'s set-weights checks, in the order the pallet runs them
//! (`shared/reference/bittensor-weights.md` §1, `internal_set_weights`). An error is the
//! variant's name: the double encodes it by the metadata's index for that name.

use std::collections::BTreeSet;

use crate::extrinsic::{Commit, WeightsCall};
use crate::state::World;

/// What an accepted call did, for its event.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    WeightsSet { netuid_index: u16, uid: u16 },
    Committed { who: [u8; 32], netuid_index: u16, hash: [u8; 32], reveal_round: u64 },
}

/// Unrevealed commits a hotkey may hold (`TooManyUnrevealedCommits` past it).
const MAX_UNREVEALED: usize = 10;

/// Runs the call for `who` at block `now`; on success stores the weights (or the commit) and
/// `LastUpdate`.
pub fn set_weights(world: &mut World, who: &[u8; 32], call: &WeightsCall, now: u64) -> Result<Done, &'static str> {
    if let Some(commit) = &call.commit {
        return commit_timelocked(world, who, call, commit, now);
    }
    let subnet = world.subnet(call.netuid);
    if subnet.is_some_and(|s| s.commit_reveal_weights_enabled) {
        return Err("CommitRevealEnabled");
    }
    if call.netuid == 0 {
        return Err("CanNotSetRootNetworkWeights");
    }
    if call.dests.len() != call.weights.len() {
        return Err("WeightVecNotEqualSize");
    }
    // One mechanism per subnet here (MechanismCountCurrent is 1 by default).
    let subnet = match subnet {
        Some(s) if call.mecid == 0 => s,
        _ => return Err("MechanismDoesNotExist"),
    };
    let n = subnet.hotkeys.len();
    if call.dests.len() > n {
        return Err("UidsLengthExceedUidsInSubNet");
    }
    let uid = subnet.uid_of(who).ok_or("HotKeyNotRegisteredInSubNet")?;
    // NotEnoughStakeToSetWeights: not modelled (stake is not in the double's state).
    if subnet.weights_version_key != 0 && call.version_key < subnet.weights_version_key {
        return Err("IncorrectWeightVersionKey");
    }
    let last = subnet.last_update(uid);
    if last != 0 && now.saturating_sub(last) < subnet.weights_set_rate_limit {
        return Err("SettingWeightsTooFast");
    }
    let self_weight = call.dests.len() == 1 && call.dests[0] == uid;
    if !subnet.permit(uid) && !self_weight {
        return Err("NeuronNoValidatorPermit");
    }
    if call.dests.iter().collect::<BTreeSet<_>>().len() != call.dests.len() {
        return Err("DuplicateUids");
    }
    if call.dests.iter().any(|&d| d as usize >= n) {
        return Err("UidVecContainInvalidOne");
    }
    if call.dests.len() < (subnet.min_allowed_weights as usize).min(n) && !self_weight {
        return Err("WeightVecLengthIsLow");
    }
    let upscaled = max_upscale(&call.weights);
    if subnet.max_weights_limit != u16::MAX && !self_weight {
        let sum: u64 = call.weights.iter().map(|&w| u64::from(w)).sum();
        let max = call.weights.iter().map(|&w| u64::from(w) * u64::from(u16::MAX) / sum.max(1)).max().unwrap_or(0);
        if max > u64::from(subnet.max_weights_limit) {
            return Err("MaxWeightExceeded");
        }
    }
    let subnet = world.subnet_mut(call.netuid).expect("checked above");
    subnet.weights.insert(uid, call.dests.iter().copied().zip(upscaled).collect());
    if subnet.last_update.len() < n {
        subnet.last_update.resize(n, 0);
    }
    subnet.last_update[uid as usize] = now;
    Ok(Done::WeightsSet { netuid_index: u16::from(call.mecid) * 4096 + call.netuid, uid })
}

/// `commit_timelocked_mechanism_weights`: the checks the double models (the subnet's
/// commit-reveal switch, the commit-reveal version, registration, the rate limit, the
/// unrevealed-commit cap); the commit is held, not opened (the double has no drand pulses).
fn commit_timelocked(
    world: &mut World,
    who: &[u8; 32],
    call: &WeightsCall,
    commit: &Commit,
    now: u64,
) -> Result<Done, &'static str> {
    let version = world.commit_reveal_version;
    let subnet = match world.subnet(call.netuid) {
        Some(s) if call.mecid == 0 => s,
        _ => return Err("MechanismDoesNotExist"),
    };
    if !subnet.commit_reveal_weights_enabled {
        return Err("CommitRevealDisabled");
    }
    if commit.commit_reveal_version != version {
        return Err("IncorrectCommitRevealVersion");
    }
    let uid = subnet.uid_of(who).ok_or("HotKeyNotRegisteredInSubNet")?;
    let last = subnet.last_update(uid);
    if last != 0 && now.saturating_sub(last) < subnet.weights_set_rate_limit {
        return Err("CommittingWeightsTooFast");
    }
    if subnet.commits.iter().filter(|(u, ..)| *u == uid).count() >= MAX_UNREVEALED {
        return Err("TooManyUnrevealedCommits");
    }
    let n = subnet.hotkeys.len();
    let subnet = world.subnet_mut(call.netuid).expect("checked above");
    subnet.commits.push((uid, commit.commit.clone(), commit.reveal_round));
    if subnet.last_update.len() < n {
        subnet.last_update.resize(n, 0);
    }
    subnet.last_update[uid as usize] = now;
    let hash = sp_crypto_hashing::blake2_256(&commit.commit);
    Ok(Done::Committed { who: *who, netuid_index: call.netuid, hash, reveal_round: commit.reveal_round })
}

/// The pool's pre-check for weight calls: a registered hotkey inside its rate-limit window is
/// refused before inclusion (`Custom(6)`, RateLimitExceeded).
pub fn pool_check(world: &World, who: &[u8; 32], call: &WeightsCall, now: u64) -> Result<(), u8> {
    let Some(subnet) = world.subnet(call.netuid) else { return Ok(()) };
    let Some(uid) = subnet.uid_of(who) else { return Ok(()) };
    let last = subnet.last_update(uid);
    // A set on a commit-reveal subnet fails at dispatch instead; a commit is rate-limited here.
    let limited = call.commit.is_some() || !subnet.commit_reveal_weights_enabled;
    if limited && last != 0 && now.saturating_sub(last) < subnet.weights_set_rate_limit {
        return Err(6);
    }
    Ok(())
}

/// `vec_u16_max_upscale_to_u16`: the largest value becomes 65535.
fn max_upscale(values: &[u16]) -> Vec<u16> {
    let max = values.iter().copied().max().unwrap_or(0);
    if max == 0 || max == u16::MAX {
        return values.to_vec();
    }
    values
        .iter()
        .map(|&v| ((u64::from(v) * u64::from(u16::MAX) + u64::from(max) / 2) / u64::from(max)) as u16)
        .collect()
}

use super::*;
use crate::api::leaderboard::SecretKeyRef;

fn sink(mode: ChainMode) -> ChainSink {
    ChainSink {
        endpoint: "ws://node:9944".into(),
        netuid: 56,
        mechanism_id: 0,
        hotkey_secret_ref: SecretKeyRef { name: "validator".into(), key: "hotkey".into() },
        version_key: None,
        mode,
        repush_every_blocks: None,
    }
}

fn key(n: u8) -> String {
    ss58::encode(&[n; 32])
}

fn standing(miner: &str, weight: f64, weight_u16: u16) -> Standing {
    Standing { miner: miner.into(), weight, weight_u16, ..Standing::default() }
}

fn board() -> Vec<Standing> {
    vec![standing("alice", 0.6, 65535), standing("bob", 0.3, 32767), standing("carol", 0.1, 10922)]
}

fn hotkeys(pairs: &[(&str, Option<String>)]) -> BTreeMap<String, Option<String>> {
    pairs.iter().map(|(m, h)| (m.to_string(), h.clone())).collect()
}

fn all_registered() -> BTreeMap<String, Option<String>> {
    hotkeys(&[("alice", Some(key(1))), ("bob", Some(key(2))), ("carol", Some(key(3)))])
}

/// Uids 0..: the validator (key 9) at 0, then the given hotkeys.
fn chain(block: u64, last_update: u64, registered: &[u8]) -> Snapshot {
    let uids = registered.iter().enumerate().map(|(i, n)| (key(*n), i as u16 + 1)).collect();
    Snapshot {
        block,
        params: ChainParams {
            subnetwork_n: Some(registered.len() as u16 + 1),
            min_allowed_weights: Some(1),
            max_weights_limit: Some(u16::MAX),
            weights_version_key: Some(7),
            commit_reveal_weights_enabled: Some(false),
        },
        weights_set_rate_limit: 100,
        validator_uid: Some(0),
        last_update,
        uids,
        tempo: 360,
        reveal_period_epochs: 1,
        commit_reveal_version: 4,
        weights: Vec::new(),
    }
}

fn at(second: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap()
}

#[test]
fn miners_without_a_usable_hotkey_are_unpaid_and_named_with_the_reason() {
    let shared = key(5);
    let given = hotkeys(&[
        ("alice", Some(key(1))),
        ("bob", Some("5Fbob-not-ss58".into())),
        ("carol", None),
        ("dave", Some(shared.clone())),
        ("erin", Some(shared.clone())),
    ]);
    let mut standings = board();
    standings.extend([standing("dave", 0.0, 0), standing("erin", 0.0, 0), standing("frank", 0.0, 0)]);
    let desired = prepare(&standings, &given, &sink(ChainMode::Auto));
    assert_eq!(desired.hotkeys, BTreeMap::from([("alice".to_string(), key(1))]));
    let reasons: Vec<(&str, &str)> = desired.unpaid.iter().map(|u| (u.miner.as_str(), u.reason.as_str())).collect();
    assert_eq!(
        reasons,
        [
            ("bob", "InvalidHotkey"),
            ("carol", "NoHotkey"),
            ("dave", "SharedHotkey"),
            ("erin", "SharedHotkey"),
            ("frank", "NoHotkey")
        ]
    );
    assert_eq!(desired.standings.len(), 6, "every miner stays in the vector's normalisation");
}

#[test]
fn the_digest_changes_with_what_the_chain_would_get_and_only_then() {
    let base = prepare(&board(), &all_registered(), &sink(ChainMode::Auto));
    assert_eq!(base.digest, prepare(&board(), &all_registered(), &sink(ChainMode::Auto)).digest);
    let mut reweighted = board();
    reweighted[1].weight_u16 = 30000;
    let mut rekeyed = all_registered();
    rekeyed.insert("bob".into(), Some(key(8)));
    let mut other_net = sink(ChainMode::Auto);
    other_net.netuid = 57;
    for changed in [
        prepare(&reweighted, &all_registered(), &sink(ChainMode::Auto)),
        prepare(&board(), &rekeyed, &sink(ChainMode::Auto)),
        prepare(&board(), &all_registered(), &other_net),
        prepare(&board(), &all_registered(), &sink(ChainMode::Set)),
    ] {
        assert_ne!(changed.digest, base.digest);
    }
}

#[test]
fn a_push_is_due_until_the_chain_took_these_weights() {
    let desired = prepare(&board(), &all_registered(), &sink(ChainMode::Auto));
    let empty = ChainSinkStatus::default();
    assert_eq!(due(&empty, &desired, &sink(ChainMode::Auto), at(0)), Due::Push);
    let synced = ChainSinkStatus { synced_digest: Some(desired.digest.clone()), ..empty.clone() };
    assert_eq!(due(&synced, &desired, &sink(ChainMode::Auto), at(0)), Due::UpToDate { recheck: None });
    let stale = ChainSinkStatus { synced_digest: Some("older".into()), ..empty };
    assert_eq!(due(&stale, &desired, &sink(ChainMode::Auto), at(0)), Due::Push);
}

#[test]
fn a_refused_push_is_retried_after_a_minute_and_a_failed_one_after_an_hour() {
    let desired = prepare(&board(), &all_registered(), &sink(ChainMode::Auto));
    let plan = decide_plan(&desired);
    for (outcome, wait) in [("Refused: RateLimitExceeded", RETRY_REFUSED), ("Failed: SubtensorModule::X", RETRY_FAILED)]
    {
        let status =
            record(&ChainSinkStatus::default(), push_record(&plan, &desired.digest, at(0), outcome.into(), None));
        assert_eq!(status.synced_digest, None);
        let held = due(&status, &desired, &sink(ChainMode::Auto), at(10));
        let until = at(wait.as_secs() as i64);
        assert_eq!(held, Due::Hold { until, retry: wait - Duration::from_secs(10), outcome: outcome.into() });
        assert_eq!(due(&status, &desired, &sink(ChainMode::Auto), at(wait.as_secs() as i64)), Due::Push);
        // New weights are not held back by the old ones' failure.
        let mut other = board();
        other[0].weight_u16 = 1;
        let changed = prepare(&other, &all_registered(), &sink(ChainMode::Auto));
        assert_eq!(due(&status, &changed, &sink(ChainMode::Auto), at(10)), Due::Push);
    }
}

fn decide_plan(desired: &Desired) -> Plan {
    match decide(&sink(ChainMode::Set), desired, &chain(1000, 0, &[1, 2, 3]), &key(9)).0 {
        Step::Send(plan) => *plan,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_window_decides_send_or_wait_at_the_pallets_boundary() {
    let desired = prepare(&board(), &all_registered(), &sink(ChainMode::Auto));
    // LastUpdate 901, limit 100: a call included at 1001 (head 1000 + 1) is accepted.
    assert!(matches!(
        decide(&sink(ChainMode::Auto), &desired, &chain(1000, 901, &[1, 2, 3]), &key(9)).0,
        Step::Send(_)
    ));
    match decide(&sink(ChainMode::Auto), &desired, &chain(1000, 902, &[1, 2, 3]), &key(9)).0 {
        Step::Wait { from, blocks, .. } => {
            assert_eq!((from, blocks), (1002, 1));
            assert_eq!(wait_time(blocks), Duration::from_secs(24));
        }
        other => panic!("{other:?}"),
    }
    // Never set: the next block.
    assert!(matches!(decide(&sink(ChainMode::Auto), &desired, &chain(5, 0, &[1, 2, 3]), &key(9)).0, Step::Send(_)));
}

#[test]
fn a_deregistered_miner_is_reported_and_gets_no_weight() {
    let desired = prepare(&board(), &all_registered(), &sink(ChainMode::Auto));
    // carol's hotkey (3) lost its uid.
    let (step, unpaid) = decide(&sink(ChainMode::Auto), &desired, &chain(1000, 0, &[1, 2]), &key(9));
    let Step::Send(plan) = step else { panic!("{step:?}") };
    assert_eq!(plan.call.args.dests, vec![1, 2]);
    assert_eq!(
        unpaid,
        vec![UnpaidMiner { miner: "carol".into(), hotkey: Some(key(3)), reason: "NotRegistered".into() }]
    );
    assert_eq!(plan.call.args.version_key, 7, "the chain's WeightsVersionKey");
    let mut pinned = sink(ChainMode::Auto);
    pinned.version_key = Some(42);
    let Step::Send(plan) = decide(&pinned, &desired, &chain(1000, 0, &[1, 2]), &key(9)).0 else { panic!() };
    assert_eq!(plan.call.args.version_key, 42, "spec.versionKey wins");
}

#[test]
fn what_the_chain_would_refuse_is_not_sent() {
    let desired = prepare(&board(), &all_registered(), &sink(ChainMode::Auto));
    let mut unregistered = chain(1000, 0, &[1, 2, 3]);
    unregistered.validator_uid = None;
    let (step, _) = decide(&sink(ChainMode::Set), &desired, &unregistered, &key(9));
    assert!(
        matches!(step, Step::Blocked { reason: "ValidatorNotRegistered", ref message } if message.contains(&key(9)))
    );
    let mut commit_reveal = chain(1000, 0, &[1, 2, 3]);
    commit_reveal.params.commit_reveal_weights_enabled = Some(true);
    // A plain set where the chain wants a commit, a commit where it wants a set: refused.
    let (step, _) = decide(&sink(ChainMode::Set), &desired, &commit_reveal, &key(9));
    assert!(matches!(step, Step::Blocked { reason: "CommitRevealEnabled", .. }), "{step:?}");
    let plain = chain(1000, 0, &[1, 2, 3]);
    let (step, _) = decide(&sink(ChainMode::CommitReveal), &desired, &plain, &key(9));
    assert!(matches!(step, Step::Blocked { reason: "CommitRevealDisabled", .. }), "{step:?}");
    // auto and commit-reveal commit there, in the same window as a set.
    for mode in [ChainMode::Auto, ChainMode::CommitReveal] {
        assert!(matches!(decide(&sink(mode), &desired, &commit_reveal, &key(9)).0, Step::Send(_)));
        commit_reveal.last_update = 950;
        assert!(matches!(decide(&sink(mode), &desired, &commit_reveal, &key(9)).0, Step::Wait { from: 1050, .. }));
        commit_reveal.last_update = 0;
    }
    // A dry run records the call whatever the window or commit-reveal say.
    let mut inside = chain(1000, 990, &[1, 2, 3]);
    inside.params.commit_reveal_weights_enabled = Some(true);
    let (step, _) = decide(&sink(ChainMode::DryRun), &desired, &inside, &key(9));
    assert!(matches!(step, Step::DryRun(_)), "{step:?}");
}

#[test]
fn status_keeps_the_newest_five_pushes_and_the_digest_the_chain_took() {
    let desired = prepare(&board(), &all_registered(), &sink(ChainMode::Auto));
    let plan = decide_plan(&desired);
    let mut status = ChainSinkStatus::default();
    for i in 0..7 {
        let outcome = if i == 3 { "ExtrinsicSuccess" } else { "Refused: Stale" };
        status = record(&status, push_record(&plan, &format!("d{i}"), at(i), outcome.into(), None));
    }
    assert_eq!(status.pushes.len(), HISTORY);
    assert_eq!(status.pushes[0].digest, "d6");
    assert_eq!(status.synced_digest.as_deref(), Some("d3"));
    assert_eq!(last_success(&status), Some(at(3)));
    assert_eq!(status.pushes[0].dests, plan.call.args.dests);
    assert_eq!(status.pushes[0].weights, plan.call.args.weights);
}

/// The plan of `desired` as the chain would hold it after a set at `last_update`.
fn holding(desired: &Desired, block: u64, last_update: u64) -> Snapshot {
    let plan = decide_plan(desired);
    let args = &plan.call.args;
    let mut chain = chain(block, last_update, &[1, 2, 3]);
    chain.weights = args.dests.iter().copied().zip(args.weights.iter().copied()).collect();
    chain
}

#[test]
fn weights_the_chain_already_holds_are_recorded_not_sent_again() {
    let desired = prepare(&board(), &all_registered(), &sink(ChainMode::Auto));
    // The status write of a push at 990 was lost: the chain holds the vector; whether the
    // window is open (1100) or not (1000), nothing is sent and it is recorded as on chain.
    for head in [1000, 1100] {
        match decide(&sink(ChainMode::Auto), &desired, &holding(&desired, head, 990), &key(9)).0 {
            Step::OnChain { block, recheck, .. } => assert_eq!((block, recheck), (990, None)),
            other => panic!("{other:?}"),
        }
    }
    // Other weights on the chain (or none): the usual window.
    let mut other = holding(&desired, 1000, 990);
    other.weights[0].1 -= 1;
    assert!(matches!(decide(&sink(ChainMode::Auto), &desired, &other, &key(9)).0, Step::Wait { from: 1090, .. }));
    other.weights.clear();
    other.block = 1100;
    assert!(matches!(decide(&sink(ChainMode::Auto), &desired, &other, &key(9)).0, Step::Send(_)));
    // Recorded once: the digest is synced, an Event and the on_chain count come with it.
    let Step::OnChain { plan, block, recheck } =
        decide(&sink(ChainMode::Auto), &desired, &holding(&desired, 1000, 990), &key(9)).0
    else {
        panic!()
    };
    let first = on_chain(
        ChainSinkStatus::default(),
        &ChainSinkStatus::default(),
        &plan,
        &desired.digest,
        block,
        recheck,
        at(0),
    );
    assert_eq!(first.status.synced_digest.as_deref(), Some(desired.digest.as_str()));
    assert_eq!((first.status.pushes[0].outcome.as_str(), first.status.pushes[0].block), (ON_CHAIN, Some(990)));
    assert_eq!(first.status.pushes[0].extrinsic_hash, None, "nothing was sent");
    assert_eq!((first.metric, first.condition.reason), (Some("on_chain"), "Pushed"));
    assert!(first.condition.message.contains("OnChain in block 990"), "{}", first.condition.message);
    let again = on_chain(first.status.clone(), &first.status, &plan, &desired.digest, block, recheck, at(5));
    assert_eq!(again.status, first.status, "no second record");
    assert_eq!(again.metric, None);
}

#[test]
fn with_a_repush_period_unchanged_weights_are_set_again_once_it_passed() {
    let desired = prepare(&board(), &all_registered(), &sink(ChainMode::Auto));
    let mut every = sink(ChainMode::Auto);
    every.repush_every_blocks = Some(361);
    let plan = decide_plan(&desired);
    let mut pushed = push_record(&plan, &desired.digest, at(0), "ExtrinsicSuccess".into(), None);
    pushed.block = Some(1000);
    let status = record(&ChainSinkStatus::default(), pushed);
    // Without a period: up to date for good.
    assert_eq!(due(&status, &desired, &sink(ChainMode::Auto), at(100_000)), Due::UpToDate { recheck: None });
    // With one: look again 361 blocks (12 s each) after the push.
    assert_eq!(due(&status, &desired, &every, at(12)), Due::UpToDate { recheck: Some(Duration::from_secs(360 * 12)) });
    assert_eq!(due(&status, &desired, &every, at(361 * 12)), Due::Push);
    // The chain decides by its blocks: LastUpdate 1000, at head 1300 not yet (look again when
    // block 1361 is due); at 1360 the call lands in 1361 and is sent.
    match decide(&every, &desired, &holding(&desired, 1300, 1000), &key(9)).0 {
        Step::OnChain { recheck, .. } => assert_eq!(recheck, Some(wait_time(60))),
        other => panic!("{other:?}"),
    }
    let early = on_chain(status.clone(), &status, &plan, &desired.digest, 1000, Some(wait_time(60)), at(12));
    assert_eq!((early.status, early.requeue), (status.clone(), Some(wait_time(60))), "nothing recorded");
    assert!(matches!(decide(&every, &desired, &holding(&desired, 1361, 1000), &key(9)).0, Step::Send(_)));
    // A rate limit longer than the period still holds.
    let mut slow = holding(&desired, 1361, 1000);
    slow.weights_set_rate_limit = 400;
    assert!(matches!(decide(&every, &desired, &slow, &key(9)).0, Step::Wait { from: 1400, .. }));
}

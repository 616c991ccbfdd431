use super::*;

/// drand quicknet's pulse of round 1000 (its BLS signature), as api.drand.sh serves it under
/// the quicknet chain hash: the one real pulse this machine has.
pub const ROUND_1000: &str =
    "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn a_commit_opens_with_the_pulse_of_its_round_and_no_other() {
    let payload = payload(&[7; 32], &[1, 2, 4], &[65535, 100, 7], 10_005_000);
    // SCALE: compact(32) ‖ hotkey ‖ compact(3) ‖ uids ‖ compact(3) ‖ values ‖ u64 LE.
    assert_eq!(payload.len(), 1 + 32 + 1 + 6 + 1 + 6 + 8);
    assert_eq!(&payload[..2], &[0x80, 7]);
    let commit = encrypt(&payload, 1000).unwrap();
    // U (96) ‖ V, W (8 + 32 each) ‖ body: 8 + (8 + payload + 16-byte tag) + (8 + 12-byte nonce) ‖ suite 8 + 8.
    assert_eq!(commit.len(), 96 + 80 + 8 + (8 + payload.len() + 16) + 20 + 16);
    assert_eq!(&commit[commit.len() - 8..], b"AES_GCM_");
    assert_eq!(decrypt(&commit, &unhex(ROUND_1000)).unwrap(), payload);
    // Another round's identity: the pulse of 1000 does not open it.
    let other = encrypt(&payload, 1001).unwrap();
    assert!(matches!(decrypt(&other, &unhex(ROUND_1000)), Err(TlockError::Decrypt(_))));
    // Two encryptions of one payload differ (fresh randomness each time).
    assert_ne!(encrypt(&payload, 1000).unwrap(), commit);
    assert!(matches!(decrypt(&commit[..150], &unhex(ROUND_1000)), Err(TlockError::Format(_))));
}

#[test]
fn the_reveal_round_is_the_pulse_due_three_blocks_into_the_reveal_epoch() {
    // netuid 56, tempo 360: epochs are 361 blocks, block b in epoch (b + 57) / 361.
    let schedule = Schedule { netuid: 56, tempo: 360, reveal_period_epochs: 1, head: 1000 };
    // Head 1000 is in epoch 2; epoch 3 starts at 3·361 − 57 = 1026; aimed at 1029.
    assert_eq!(reveal_block(&schedule), 1029);
    assert_eq!(reveal_block(&Schedule { reveal_period_epochs: 2, ..schedule }), 1390);
    // The last block of epoch 2 (1025) still reveals in epoch 3; 1026 is epoch 3 itself.
    assert_eq!(reveal_block(&Schedule { head: 1025, ..schedule }), 1029);
    assert_eq!(reveal_block(&Schedule { head: 1026, ..schedule }), 1390);
    // 29 blocks of 12 s after a head at genesis + 3000 s: round (3000 + 348) / 3 = 1116.
    let now_ms = (QUICKNET_GENESIS_SECS + 3000) * 1000;
    assert_eq!(reveal_round(&schedule, now_ms, 12_000), 1116);
    // Rounded down: 1 ms before a round's emission is the round before.
    assert_eq!(reveal_round(&schedule, now_ms - 1, 12_000), 1115);
}

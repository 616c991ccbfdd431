"""bittensor-drand (the timelock library the bittensor SDK commits with) against our
timelocked commit, with drand quicknet's real pulse of round 1000.

    sdk_tlock.py COMMIT_HEX PAYLOAD_HEX PULSE_HEX

Prints JSON: `opened` (our commit decrypted by bittensor-drand, hex), `theirs` (PAYLOAD
encrypted by bittensor-drand to round 1000, the commit bytes as the SDK sends them, hex),
`version`.
"""

import json
import sys
from importlib.metadata import version

import bittensor_drand as drand

ROUND = 1000


def compact(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    return ((n << 2) | 2).to_bytes(4, "little")


def unwrap(user_data: bytes) -> bytes:
    """`encrypt`'s answer is SCALE `UserData { encrypted_data: Vec<u8>, reveal_round: u64 }`."""
    mode = user_data[0] & 3
    width = {0: 1, 1: 2, 2: 4}[mode]
    length = int.from_bytes(user_data[:width], "little") >> 2
    return user_data[width : width + length]


commit, payload, pulse = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3]
# decrypt_with_signature reads the UserData wrapping; the commit itself is its encrypted_data.
opened = drand.decrypt_with_signature(compact(len(commit)) + commit + ROUND.to_bytes(8, "little"), pulse)
theirs, round_ = drand.encrypt_at_round(payload, ROUND)
assert round_ == ROUND, round_
print(json.dumps({"opened": opened.hex(), "theirs": unwrap(theirs).hex(), "version": version("bittensor-drand")}))

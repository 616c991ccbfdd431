"""Chain weight vectors computed by the reference SDK, one JSON object per line.

The first line records the provenance ({"sdk": "bittensor==X", "numpy": ..., "cases": N});
each other line is a case: the SDK's `process_weights` over a dense vector (one weight per
uid, exclude_quantile 0, as a validator calls it) followed by
`convert_weights_and_uids_for_emit`. Weights are written with repr, so they round-trip exactly.
"""

import json
import random
import sys
from importlib.metadata import version

import numpy as np
from bittensor.utils.weight_utils import convert_weights_and_uids_for_emit, process_weights

U16_MAX = 65535
CASES = 4000


def sdk(weights: list[float], min_allowed: int, max_limit: int) -> tuple[list[int], list[int]]:
    n = len(weights)
    uids, floats = process_weights(
        uids=np.arange(n, dtype=np.int64),
        weights=np.array(weights, dtype=np.float64),
        num_neurons=n,
        min_allowed_weights=min_allowed,
        max_weight_limit=max_limit / U16_MAX,
    )
    dests, values = convert_weights_and_uids_for_emit(np.asarray(uids), np.asarray(floats))
    return [int(u) for u in dests], [int(v) for v in values]


def weights_for(rng: random.Random, n: int, shape: str) -> list[float]:
    if shape == "zero":
        return [0.0] * n
    if shape == "one":
        w = [0.0] * n
        w[rng.randrange(n)] = rng.choice([1.0, rng.random(), rng.uniform(1e-9, 1e-3)])
        return w
    if shape == "sparse":  # a few non-zero: often fewer than min_allowed (padding)
        w = [0.0] * n
        for i in rng.sample(range(n), rng.randint(1, max(1, n // 8))):
            w[i] = rng.random()
        return w
    if shape == "ties":
        levels = [rng.random() for _ in range(rng.randint(1, 3))] + [0.0]
        return [rng.choice(levels) for _ in range(n)]
    if shape == "dominant":  # one huge weight: max-weight clipping
        w = [rng.random() * 1e-3 for _ in range(n)]
        w[rng.randrange(n)] = rng.uniform(1.0, 1e6)
        return w
    if shape == "tiny":  # values that round to zero after max-upscaling
        w = [rng.uniform(0, 1e-6) for _ in range(n)]
        w[rng.randrange(n)] = 1.0
        return w
    if shape == "leaderboard":  # sums to one, like Leaderboard weights, many zeros
        w = [rng.random() ** 4 if rng.random() < 0.5 else 0.0 for _ in range(n)]
        total = sum(w)
        return [x / total for x in w] if total else w
    return [rng.random() for _ in range(n)]


def main() -> None:
    with open(sys.argv[2], "w") as out:  # the SDK logs to stdout
        write(out)


def write(out) -> None:
    rng = random.Random(20261130)
    shapes = ["zero", "one", "sparse", "ties", "dominant", "tiny", "leaderboard", "uniform"]
    print(json.dumps({"sdk": f"bittensor=={sys.argv[1]}", "installed": version("bittensor"),
                      "numpy": np.__version__, "cases": CASES}), file=out)
    for case in range(CASES):
        n = rng.choice([1, 2, 3, rng.randint(1, 64), rng.randint(1, 256), rng.randint(120, 1100)])
        min_allowed = rng.choice([0, 1, rng.randint(0, 16), rng.randint(0, n + 4), n, n + 1, 1024])
        max_limit = rng.choice([U16_MAX, U16_MAX, rng.randint(1, U16_MAX), rng.randint(600, 20000),
                                max(1, U16_MAX // max(1, n)), U16_MAX // 2])
        weights = weights_for(rng, n, shapes[case % len(shapes)])
        dests, values = sdk(weights, min_allowed, max_limit)
        print(json.dumps({"min_allowed_weights": min_allowed, "max_weights_limit": max_limit,
                          "weights": weights, "dests": dests, "values": values}), file=out)


if __name__ == "__main__":
    main()

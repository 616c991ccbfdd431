"""Writes a `gradients score` input: TASKS tasks × 15 submissions among 256 miners over a week
(like benches/leaderboard.rs), 1 % of submissions failed with a NaN loss as Python writes it.

    python3 generate.py OUT.json [TASKS]   (default 20,000 tasks = 300,000 records)
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timedelta, timezone

TYPES = ["InstructText", "Dpo", "Grpo", "Image"]


def main() -> None:
    out, tasks = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    rng = random.Random(7)
    now = datetime(2026, 11, 26, tzinfo=timezone.utc)
    miners = [f"5Miner{i:04}" for i in range(256)]
    records = []
    for t in range(tasks):
        task_type = TYPES[t % 4]
        finished = now - timedelta(seconds=rng.randrange(7 * 86_400))
        start = rng.randrange(256)
        subs = []
        for k in range(15):
            a, b = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.5)
            if rng.random() < 0.01:
                a = float("nan")
            first, second = ("test_loss", "synth_loss") if task_type != "Image" else ("text_guided_loss", "no_text_loss")
            subs.append({
                "miner": miners[(start + k * 17) % 256],
                "submitted_at": (finished - timedelta(minutes=rng.randrange(1, 600))).isoformat().replace("+00:00", "Z"),
                first: a,
                second: b,
                "weights_sha256": f"{rng.getrandbits(64):064x}",
            })
        records.append({"id": f"task-{t}", "type": task_type, "model_params_b": rng.uniform(0.5, 70.0),
                        "hours": rng.uniform(1.0, 10.0), "finished_at": finished.isoformat().replace("+00:00", "Z"),
                        "submissions": subs})
    with open(out, "w") as f:
        json.dump({"now": now.isoformat().replace("+00:00", "Z"), "tasks": records}, f)


if __name__ == "__main__":
    main()

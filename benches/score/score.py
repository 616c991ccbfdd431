"""A plain Python implementation of `gradients score` (the same rules as src/mechanism/): the
baseline `benches/score/compare` measures the Rust command against. Standard library only.

    python3 score.py RECORDS.json > report.json
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timedelta

TEXT_TEST_WEIGHT = 0.7
IMAGE_TEXT_GUIDED_WEIGHT = 0.25
SUSPICIOUS_SIGMA = 0.5
SUSPICIOUS_MIN = 3
FIRST, PENALTY = 3.0, -1.0
PENALTY_MIN_RANKED, PENALTY_SHARE = 8, 0.25
SIZE_CAP = 40.0
WINDOWS = [(1, 0.3), (3, 0.3), (7, 0.4)]
SIGMOID_W, LINEAR_W, STEEP, SHIFT, POWER = 0.7, 0.05, 9.0, 0.5, 0.75
TEXT = {"InstructText", "Dpo", "Grpo"}


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def loss(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return float(value)  # "NaN", "Infinity"
    return float(value)  # type: ignore[arg-type]


def pair(task_type: str, sub: dict) -> tuple[float | None, float | None]:
    if task_type in TEXT:
        return loss(sub.get("test_loss")), loss(sub.get("synth_loss"))
    return loss(sub.get("text_guided_loss")), loss(sub.get("no_text_loss"))


def weighted(task_type: str, p: tuple[float | None, float | None]) -> float | None:
    a, b = p
    if a is None or b is None or not math.isfinite(a) or not math.isfinite(b):
        return None
    w = TEXT_TEST_WEIGHT if task_type in TEXT else IMAGE_TEXT_GUIDED_WEIGHT
    return w * a + (1.0 - w) * b


def earlier_key(sub: dict) -> tuple:
    return (sub["_at"], sub["miner"])


def bits(x: float | None) -> object:
    x = math.nan if x is None else x
    if x == 0.0:
        return 0.0
    return ("nan",) if math.isnan(x) else x


def score_task(task: dict) -> dict:
    t = task["type"]
    subs = task["submissions"]
    for s in subs:
        s["_at"] = stamp(s["submitted_at"])
    losses = [weighted(t, pair(t, s)) for s in subs]
    status = ["ranked" if l is not None else "failed" for l in losses]
    alive = [i for i in range(len(subs)) if status[i] != "failed"]
    parent = list(range(len(subs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    keys = {i: tuple(bits(v) for v in pair(t, subs[i])) for i in alive}
    for x, i in enumerate(alive):
        for j in alive[x + 1:]:
            hi, hj = subs[i].get("weights_sha256"), subs[j].get("weights_sha256")
            if (hi is not None and hi == hj) or keys[i] == keys[j]:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[rj] = ri
    keeper: dict[int, int] = {}
    for i in alive:
        r = find(i)
        if r not in keeper or earlier_key(subs[i]) < earlier_key(subs[keeper[r]]):
            keeper[r] = i
    dup_of: list[int | None] = [None] * len(subs)
    for i in alive:
        k = keeper[find(i)]
        if k != i:
            status[i] = "duplicate"
            dup_of[i] = k
    if t in TEXT:
        rem = [i for i in range(len(subs)) if status[i] == "ranked"]
        if len(rem) >= max(SUSPICIOUS_MIN, 1):
            test = [subs[i].get("test_loss") or 0.0 for i in rem]
            n = float(len(rem))
            mean = sum(test) / n
            sigma = math.sqrt(sum((x - mean) ** 2 for x in test) / n)
            if sigma > 0.0:
                gaps = {i: (subs[i].get("synth_loss") or 0.0) - (subs[i].get("test_loss") or 0.0) for i in rem}
                g = sorted(gaps.values())
                mid = len(g) // 2
                median = g[mid] if len(g) % 2 == 1 else (g[mid - 1] + g[mid]) / 2.0
                for i in rem:
                    if gaps[i] - median > SUSPICIOUS_SIGMA * sigma:
                        status[i] = "flagged"
    ranked = sorted((i for i in range(len(subs)) if status[i] == "ranked"),
                    key=lambda i: (losses[i], subs[i]["_at"], subs[i]["miner"]))
    n = len(ranked)
    penalised = max(int(math.floor(PENALTY_SHARE * n)), 1) if n > PENALTY_MIN_RANKED else 0
    rank: list[int | None] = [None] * len(subs)
    score = [0.0] * len(subs)
    for place, i in enumerate(ranked):
        rank[i] = place + 1
        score[i] = FIRST if place == 0 else (PENALTY if place >= n - penalised else 0.0)
    for i, st in enumerate(status):
        if st in ("failed", "duplicate") and n >= 1:
            score[i] = PENALTY
    size = min(max(math.floor(task["model_params_b"]), 1.0), SIZE_CAP)
    weight = max(2.0 * math.sqrt(task["hours"] * size), 1.0)
    out = []
    for i, s in enumerate(subs):
        row = {"miner": s["miner"], "status": status[i]}
        if dup_of[i] is not None:
            row["duplicate_of"] = subs[dup_of[i]]["miner"]
        row.update(weighted_loss=losses[i], rank=rank[i], score=score[i], adjusted_score=score[i] * weight)
        out.append(row)
    out.sort(key=lambda r: r["miner"])
    return {"id": task["id"], "task_weight": weight, "ranked": n, "scores": out}


def leaderboard(doc: dict) -> dict:
    now = stamp(doc["now"])
    horizon = timedelta(days=max(d for d, _ in WINDOWS))
    sums: dict[str, list[float]] = {}
    counts: dict[str, int] = {}
    tasks = sorted(doc["tasks"], key=lambda t: (t["id"], stamp(t["finished_at"]), t["type"], len(t["submissions"]),
                                                t["hours"], t["model_params_b"]))
    scored = []
    for task in tasks:
        s = score_task(task)
        age = now - stamp(task["finished_at"])
        if timedelta(0) <= age <= horizon:
            for row in s["scores"]:
                m = row["miner"]
                acc = sums.setdefault(m, [0.0] * len(WINDOWS))
                counts[m] = counts.get(m, 0) + 1
                for w, (days, _) in enumerate(WINDOWS):
                    if age <= timedelta(days=days):
                        acc[w] += row["adjusted_score"]
        scored.append(s)
    names = sorted(sums)
    quality = [0.0] * len(names)
    for w, (_, weight) in enumerate(WINDOWS):
        best = max((sums[m][w] for m in names), default=-math.inf)
        if best > 0.0:
            for k, m in enumerate(names):
                quality[k] += weight * max(sums[m][w], 0.0) / best
    best_q = max(quality, default=0.0)
    f = []
    for q in quality:
        if best_q <= 0.0 or q <= 0.0:
            f.append(0.0)
            continue
        x = q / best_q
        sig = 1.0 / (1.0 + math.exp(-STEEP * (x - SHIFT)))
        f.append(SIGMOID_W * sig ** POWER + LINEAR_W * x)
    total = sum(f)
    weights = [v / total for v in f] if total > 0.0 else [0.0] * len(f)
    top = max(weights, default=0.0)
    u16 = [int(math.floor(65535.0 * v / top + 0.5)) if top > 0.0 else 0 for v in weights]
    miners = [{"miner": m, "quality": quality[k], "weight": weights[k], "weight_u16": u16[k],
               "window_sums": sums[m], "tasks": counts[m]} for k, m in enumerate(names)]
    return {"now": doc["now"], "miners": miners, "tasks": scored}


def main() -> None:
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    json.dump(leaderboard(doc), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

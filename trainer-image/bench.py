#!/usr/bin/env python3
"""Wall time of train + evaluate per task type at the tiny test sizes (CPU).

Every step runs as a real ``python -m gradients_trainer`` subprocess, so the figures include
interpreter start-up and the torch/transformers imports, as the Rust runner would see them.

    $(./setup-env | tail -1) bench.py [--strategy lora-fast] [--workdir DIR]
        [--tasks instruct,dpo,grpo,image] [--size tiny|small] [--hours H]

``--size small`` builds a ~25M-parameter Llama (for GPU throughput: tokens/s of LoRA SFT).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "tests"))

import tinydata as td  # noqa: E402


def run(args: list[Any]) -> tuple[float, dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=str(HERE / "src"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "gradients_trainer", *map(str, args)],
                          capture_output=True, text=True, env=env)
    wall = time.time() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"failed: {args[:3]} rc={proc.returncode}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strategy", default="lora-fast")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--tasks", default="instruct,dpo,grpo,image")
    parser.add_argument("--size", choices=["tiny", "small"], default="tiny")
    parser.add_argument("--hours", default="0.1")
    parser.add_argument("--image-arch", choices=["sdxl", "sd", "flux"], default="sdxl")
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="gradients-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    d = root / "data"
    d.mkdir(exist_ok=True)
    pre = td.pretrain_corpus(d / "pretrain.txt")
    ins = [td.write_jsonl(d / f"ins_{n}.jsonl", td.instruct_rows(k, s))
           for n, k, s in (("train", 48, 1), ("test", 12, 2), ("synth", 12, 3))]
    dpo = [td.write_jsonl(d / f"dpo_{n}.jsonl", td.dpo_rows(k, s))
           for n, k, s in (("train", 32, 1), ("test", 12, 2), ("synth", 12, 3))]
    grpo = [td.write_jsonl(d / f"grpo_{n}.jsonl", td.grpo_rows(k, s))
            for n, k, s in (("train", 16, 1), ("test", 8, 2), ("synth", 8, 3))]
    rewards = td.rewards_file(d / "rewards.json", [("count_a", td.REWARD_A, 1.0)])
    img_pre = td.image_pretrain_folder(d / "img_pre")
    img_train = td.image_folder(d / "img_train", 8, 1)
    img_test = td.image_folder(d / "img_test", 4, 2)

    figures: dict[str, Any] = {"strategy": args.strategy, "cpus": os.cpu_count()}
    figures["size"] = args.size
    figures["image_arch"] = args.image_arch
    if any(t != "image" for t in tasks):
        t, _ = run(["make-base-model", "--task-type", "instruct", "--output", root / "text_base",
                    "--pretrain-data", pre, "--size", args.size])
        figures["make_base_text_s"] = round(t, 1)
    if "image" in tasks:
        t, _ = run(["make-base-model", "--task-type", "image", "--output", root / "image_base",
                    "--pretrain-data", img_pre, "--architecture", args.image_arch])
        figures["make_base_image_s"] = round(t, 1)

    cases: list[tuple[str, Path, list[Path], list[Any]]] = [
        ("instruct", root / "text_base", ins, ["--columns", json.dumps(td.INSTRUCT_COLUMNS)]),
        ("dpo", root / "text_base", dpo, ["--columns", json.dumps(td.DPO_COLUMNS)]),
        ("grpo", root / "text_base", grpo, ["--reward-functions", rewards]),
        ("image", root / "image_base", [img_train, img_test, img_test], []),
    ]
    rows = []
    for task, base, (train, test, synth), extra in cases:
        if task not in tasks:
            continue
        out = root / f"out_{task}"
        t_train, done = run(["train", "--task-type", task, "--base-model", base, "--train-data",
                             train, "--output", out, "--strategy", args.strategy, "--hours", args.hours,
                             *extra])
        common = ["evaluate", "--task-type", task, "--base-model", base, "--test-data", test,
                  "--synth-data", synth, "--profile", "fast", *extra]
        t_eval, result = run([*common, "--submission", out / "model"])
        _, base_result = run([*common, "--score-base"])
        key = "text_guided_loss" if task == "image" else "test_loss"
        rows.append({
            "task": task, "train_s": round(t_train, 1), "evaluate_s": round(t_eval, 1),
            "total_s": round(t_train + t_eval, 1), "steps": done["steps"],
            "train_tokens_per_s": round(done["tokens"] / max(1e-9, done["wall_s"]), 1),
            "base_loss": round(base_result[key], 4), "finetuned_loss": round(result[key], 4),
        })
    figures["per_task"] = rows
    print(f"{'task':9} {'train_s':>8} {'eval_s':>8} {'total_s':>8} {'steps':>6} {'tok/s':>8} "
          f"{'base':>9} {'tuned':>9}")
    for r in rows:
        print(f"{r['task']:9} {r['train_s']:8} {r['evaluate_s']:8} {r['total_s']:8} {r['steps']:6} "
              f"{r['train_tokens_per_s']:8} {r['base_loss']:9} {r['finetuned_loss']:9}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

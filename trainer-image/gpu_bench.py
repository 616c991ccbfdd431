"""GPU figures for the reference trainer: LoRA SFT tokens/s on a Qwen2.5-0.5B-shaped model.

Runs the real `train` and `evaluate` entrypoints (subprocesses, as the runner and the pods do)
on a randomly initialised checkpoint with the Qwen2.5-0.5B architecture (24 layers, hidden 896,
vocabulary 151,936), since no checkpoint can be downloaded. Prints one JSON object.

    python trainer-image/gpu_bench.py --workdir /tmp/gpu-bench [--hours 0.03] [--strategy baseline]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path


def make_model(path: Path, tiny: bool) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from gradients_trainer.basemodel import build_tokenizer

    # --tiny: the same script at a CPU-friendly size, to check it before spending GPU time.
    size = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4) if tiny else dict(
        hidden_size=896, intermediate_size=4_864, num_hidden_layers=24, num_attention_heads=14)
    config = Qwen2Config(
        vocab_size=151_936, num_key_value_heads=2, max_position_embeddings=4_096,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=True, **size,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)
    build_tokenizer(model_max_length=4_096).save_pretrained(path)


def make_rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    words = "alpha beta gamma delta river stone cloud orange market garden signal vector".split()
    rows = []
    for i in range(n):
        a, b = rng.randint(10, 999), rng.randint(10, 999)
        story = " ".join(rng.choice(words) for _ in range(rng.randint(20, 60)))
        rows.append({"instruction": f"Item {i}: {story}. What is {a} plus {b}?", "output": f"{a} plus {b} is {a + b}. {story}"})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def run(args: list[str]) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "gradients_trainer", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{args[0]} failed with exit code {done.returncode}")
    return time.monotonic() - start, done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--hours", type=float, default=0.03)
    parser.add_argument("--strategy", default="baseline")
    parser.add_argument("--tiny", action="store_true")
    opts = parser.parse_args()
    work = opts.workdir
    work.mkdir(parents=True, exist_ok=True)
    import torch

    base = work / "base"
    if not (base / "config.json").exists():
        make_model(base, opts.tiny)
    write_jsonl(work / "train.jsonl", make_rows(4_000, 1))
    write_jsonl(work / "test.jsonl", make_rows(200, 2))
    write_jsonl(work / "synth.jsonl", make_rows(100, 3))
    out = work / f"out-{opts.strategy}"
    train_s, _ = run(["train", "--task-type", "instruct", "--base-model", str(base), "--train-data",
                      str(work / "train.jsonl"), "--hours", str(opts.hours), "--output", str(out),
                      "--strategy", opts.strategy])
    training = json.loads((out / "training.json").read_text())
    eval_s, result = run(["evaluate", "--task-type", "instruct", "--base-model", str(base), "--submission",
                          str(out / "model"), "--test-data", str(work / "test.jsonl"), "--synth-data",
                          str(work / "synth.jsonl")])
    print(json.dumps({
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "strategy": opts.strategy,
        "method": training.get("method"),
        "steps": training.get("steps"),
        "tokens": training.get("tokens"),
        "train_wall_s": training.get("wall_s"),
        "tokens_per_s": (training.get("tokens") or 0) / max(training.get("wall_s") or 1e-9, 1e-9),
        "final_train_loss": training.get("final_train_loss"),
        "train_process_s": round(train_s, 1),
        "evaluate_process_s": round(eval_s, 1),
        "evaluation": json.loads(result),
    }))


if __name__ == "__main__":
    main()

"""Training and evaluation throughput of the reference trainer beside a plain Hugging Face
Trainer + PEFT run: same model, batch, sequence length and data, in one invocation.

    python trainer-image/gpu_bench.py --workdir /tmp/gpu-bench [--shape qwen0.5b|llama8b|tiny]
        [--strategy lora-fast] [--batch 4] [--seq-len 512] [--steps 40] [--processes N]
        [--peak-tflops X]

Models have random weights (same cost as real ones, nothing to download): ``qwen0.5b`` is
Qwen2.5-0.5B's shape, ``llama8b`` Llama-3-8B's, ``tiny`` a CPU-sized check of the script.
Every row has the same length (``--seq-len`` tokens), so padding costs neither side anything.

Runs, each in its own process: ours (``python -m gradients_trainer train``, the pods'
entrypoint, with ``--processes N``; with N > 1 also with one process, for the scaling
efficiency), the plain Trainer + PEFT (one device), our ``evaluate`` and the plain
``Trainer.evaluate`` on the same held-out rows. The ``path`` column says how our N processes
trained: ``DDP`` (LoRA/QLoRA: every process holds the model) or ``FSDP`` (a ``full``
strategy such as ``--strategy full-ft``: parameters, gradients and AdamW state sharded), read
from the workers' own log.

Throughput is steady state: the steps after the first ``--warmup`` are timed (model loading,
compilation and the first steps are excluded on both sides).

FLOPs per token (stated, PaLM appendix B): training ``c·N + 12·L·d·T`` with ``c = 6`` for full
fine-tuning and ``c = 4`` for LoRA (forward 2N, backward through the activations 2N, no weight
gradients of the frozen base; the adapter's own FLOPs are left out), evaluation ``2·N + 4·L·d·T``;
N = the parameters that multiply (all but the input embedding; a tied output head counts
once), L layers, d the hidden size, T the sequence length. MFU = tokens/s × FLOPs per token ÷
the device's dense bf16 peak (a table by GPU name, or ``--peak-tflops``; none on CPU).
Peak memory is ``torch.cuda.max_memory_allocated`` of the process that trained (one process).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(arch="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=151_936, tie=True),
    "qwen0.5b": dict(arch="qwen2", hidden_size=896, intermediate_size=4_864, num_hidden_layers=24,
                     num_attention_heads=14, num_key_value_heads=2, vocab_size=151_936, tie=True),
    "llama8b": dict(arch="llama", hidden_size=4_096, intermediate_size=14_336, num_hidden_layers=32,
                    num_attention_heads=32, num_key_value_heads=8, vocab_size=128_256, tie=False),
}
# Dense bf16 peak TFLOP/s by device name (vendor datasheets, without sparsity).
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "A10G": 125.0, "L4": 121.0}
COLUMNS = {"instruction": "instruction", "output": "output"}


# --- the model and the data ---------------------------------------------------------------
def make_model(path: Path, shape: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from gradients_trainer.basemodel import build_tokenizer

    s = dict(SHAPES[shape])
    arch, tie = s.pop("arch"), s.pop("tie")
    config_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if arch == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    config = config_cls(max_position_embeddings=8_192, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                        tie_word_embeddings=tie, dtype="bfloat16", **s)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = model_cls(config).to(torch.bfloat16)
    model.save_pretrained(path, safe_serialization=True)
    build_tokenizer(model_max_length=8_192).save_pretrained(path)


def make_rows(n: int, chars: int, seed: int) -> list[dict[str, str]]:
    """Rows of exactly ``chars`` characters (the byte-level tokenizer: one token each)."""
    rng = random.Random(seed)
    words = "alpha beta gamma delta river stone cloud orange market garden signal vector".split()
    rows = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(chars // 4 + 8))
        cut = chars // 4
        rows.append({"instruction": f"{i}: " + text[: cut - len(f"{i}: ")],
                     "output": text[cut: chars - 2]})  # + BOS and EOS = chars tokens
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def model_flops(base: Path, seq_len: int) -> dict[str, float]:
    cfg = json.loads((base / "config.json").read_text())
    d, L, v = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    kv = cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    head = d // cfg["num_attention_heads"]
    per_layer = d * d * 2 + d * kv * head * 2 + 3 * d * cfg["intermediate_size"]
    n = L * per_layer + v * d  # the output head multiplies; the input embedding only looks up
    attention = 12 * L * d * seq_len
    return {"N": float(n), "train_full": 6.0 * n + attention, "train_lora": 4.0 * n + attention,
            "eval": 2.0 * n + attention / 3.0}


# --- ours -----------------------------------------------------------------------------------
def run_ours(base: Path, train: Path, out: Path, strategy: str, overrides: dict[str, Any],
             processes: int, warmup: int) -> dict[str, Any]:
    args = ["train", "--task-type", "instruct", "--base-model", str(base), "--train-data", str(train),
            "--columns", json.dumps(COLUMNS), "--hours", "2", "--output", str(out), "--strategy", strategy,
            "--strategy-overrides", json.dumps(overrides), "--processes", str(processes)]
    lines, stderr = _child_with_log(["--child-ours", json.dumps(args)])
    events = [json.loads(x) for x in lines]
    progress = [e for e in events if e.get("event") == "progress"]
    done = next(e for e in events if e.get("event") == "done")
    memory = next((e["peak_bytes"] for e in events if e.get("event") == "bench_memory"), None)
    per_step = done["tokens"] / max(1, done["steps"])
    timed = [e for e in progress if e["step"] > warmup]
    if len(timed) < 2:
        raise SystemExit("too few steps to time: raise --steps")
    seconds = timed[-1]["elapsed_s"] - timed[0]["elapsed_s"]
    steps = timed[-1]["step"] - timed[0]["step"]
    # Which multi-process path ran, from the workers' own log: FSDP shards a full fine-tune.
    parallel = "FSDP" if "fsdp: rank" in stderr else ("DDP" if processes > 1 else "-")
    return {"processes": processes, "parallel": parallel, "method": done["method"], "steps": done["steps"],
            "tokens_per_s": per_step * steps / seconds, "step_s": seconds / steps,
            "peak_memory_gib": None if memory is None or processes > 1 else memory / 2**30,
            "final_train_loss": done["final_train_loss"]}


def child_ours(argv: list[str]) -> None:
    sys.path.insert(0, str(HERE / "src"))
    import torch

    from gradients_trainer.cli import main

    code = main(argv)
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    print(json.dumps({"event": "bench_memory", "peak_bytes": peak}), flush=True)
    raise SystemExit(code)


def run_ours_eval(base: Path, sub: Path, test: Path, processes: int) -> dict[str, Any]:
    args = ["evaluate", "--task-type", "instruct", "--base-model", str(base), "--submission", str(sub),
            "--test-data", str(test), "--synth-data", str(test), "--columns", json.dumps(COLUMNS),
            "--processes", str(processes)]
    done = subprocess.run([sys.executable, "-m", "gradients_trainer", *args], capture_output=True,
                          text=True, env=_env())
    if done.returncode != 0:
        raise SystemExit(done.stderr[-4000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["ok"]:
        raise SystemExit(f"our evaluation failed: {result['failure']}")
    return {"seconds": result["timings"]["test_s"], "loss": result["test_loss"]}


# --- the plain Trainer + PEFT ---------------------------------------------------------------
def child_plain(spec: dict[str, Any]) -> None:
    """A plain HF Trainer + PEFT LoRA run, as its documentation shows it (bf16 on a GPU)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainerCallback, TrainingArguments)

    gpu = torch.cuda.is_available()
    tok = AutoTokenizer.from_pretrained(spec["base"])
    model = AutoModelForCausalLM.from_pretrained(spec["base"], dtype=torch.bfloat16 if gpu else torch.float32)
    if spec["method"] == "lora":
        model = get_peft_model(model, LoraConfig(r=spec["lora_r"], lora_alpha=spec["lora_alpha"],
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))

    def rows(path: str) -> list[dict[str, list[int]]]:
        out = []
        for line in Path(path).read_text().splitlines():
            r = json.loads(line)
            p = tok(r["instruction"])["input_ids"]
            c = tok(r["output"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            out.append({"input_ids": p + c, "attention_mask": [1] * (len(p) + len(c)),
                        "labels": [-100] * len(p) + c})
        return out

    train, test = rows(spec["train"]), rows(spec["test"])
    times: list[float] = []

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if gpu:
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    args = TrainingArguments(output_dir=spec["out"], per_device_train_batch_size=spec["batch"],
                             max_steps=spec["steps"],
                             learning_rate=spec["lr"], bf16=gpu, use_cpu=not gpu, logging_steps=1,
                             save_strategy="no", report_to=[], disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=test,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True), callbacks=[Clock()])
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    peak = torch.cuda.max_memory_allocated() if gpu else None
    warm = spec["warmup"]
    per_step = spec["batch"] * sum(len(r["input_ids"]) for r in train) / len(train)
    seconds = times[-1] - times[warm - 1]
    started = time.perf_counter()
    metrics = trainer.evaluate()
    eval_s = time.perf_counter() - started
    print(json.dumps({"tokens_per_s": per_step * (len(times) - warm) / seconds,
                      "step_s": seconds / (len(times) - warm), "peak_memory_gib": None if peak is None else peak / 2**30,
                      "eval_seconds": eval_s, "eval_loss": metrics["eval_loss"]}), flush=True)


# --- the invocation -------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _child(args: list[str], env: dict[str, str] | None = None) -> list[str]:
    return _child_with_log(args, env)[0]


def _child_with_log(args: list[str], env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """The child's JSON lines and its log (stderr)."""
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], capture_output=True,
                          text=True, env=env or _env())
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{args[0]} failed with exit code {done.returncode}")
    return [x for x in done.stdout.splitlines() if x.startswith("{")], done.stderr


def peak_tflops(override: float | None) -> tuple[str | None, float | None]:
    import torch

    if not torch.cuda.is_available():
        return None, override
    name = torch.cuda.get_device_name(0)
    if override is not None:
        return name, override
    return name, next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen0.5b")
    parser.add_argument("--strategy", default="lora-fast")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--child-ours", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-plain", default=None, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child_ours is not None:
        return child_ours(json.loads(opts.child_ours))
    if opts.child_plain is not None:
        return child_plain(json.loads(opts.child_plain))
    if opts.workdir is None:
        parser.error("--workdir is required")
    sys.path.insert(0, str(HERE / "src"))
    from gradients_trainer.strategies import get

    work = opts.workdir
    work.mkdir(parents=True, exist_ok=True)
    base = work / f"base-{opts.shape}"
    if not (base / "config.json").exists():
        make_model(base, opts.shape)
    strategy = get(opts.strategy)
    method = "full" if strategy.method == "full" else "lora"
    rows = opts.steps * opts.batch * opts.processes
    train = write_jsonl(work / "train.jsonl", make_rows(rows, opts.seq_len, 1))
    test = write_jsonl(work / "test.jsonl", make_rows(max(64, 8 * opts.batch), opts.seq_len, 2))
    overrides = {"batch_size": opts.batch, "grad_accum": 1, "epochs": 1, "max_seq_len": opts.seq_len,
                 "packing": False}
    ours = [run_ours(base, train, work / f"ours-{p}", opts.strategy, overrides, p, opts.warmup)
            for p in sorted({1, opts.processes})]
    ours_eval = run_ours_eval(base, work / f"ours-{opts.processes}" / "model", test, opts.processes)
    plain_env = _env()
    plain_env["CUDA_VISIBLE_DEVICES"] = plain_env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    plain_train = write_jsonl(work / "train-plain.jsonl", make_rows(opts.steps * opts.batch, opts.seq_len, 1))
    plain = json.loads(_child(["--child-plain", json.dumps({
        "base": str(base), "train": str(plain_train), "test": str(test), "out": str(work / "plain"),
        "batch": opts.batch, "steps": opts.steps, "warmup": opts.warmup, "lr": strategy.learning_rate,
        "method": method, "lora_r": strategy.lora_r, "lora_alpha": strategy.lora_alpha,
    })], env=plain_env)[-1])

    flops = model_flops(base, opts.seq_len)
    per_token = flops["train_full" if method == "full" else "train_lora"]
    device, peak = peak_tflops(opts.peak_tflops)

    def mfu(tokens_per_s: float, f: float) -> float | None:
        return None if peak is None else tokens_per_s * f / (peak * 1e12)

    eval_tokens = max(64, 8 * opts.batch) * opts.seq_len
    one = ours[0]
    top = ours[-1]
    report = {
        "device": device, "shape": opts.shape, "strategy": opts.strategy, "method": method,
        "batch": opts.batch, "seq_len": opts.seq_len, "steps": opts.steps, "parameters_N": flops["N"],
        "flops_per_token": {"train": per_token, "eval": flops["eval"]}, "peak_tflops": peak,
        "ours": [{**r, "mfu": mfu(r["tokens_per_s"] / r["processes"], per_token)} for r in ours],
        "plain": {**plain, "mfu": mfu(plain["tokens_per_s"], per_token)},
        "speedup_1_device": one["tokens_per_s"] / plain["tokens_per_s"],
        "scaling_efficiency": (top["tokens_per_s"] / (opts.processes * one["tokens_per_s"])
                               if opts.processes > 1 else None),
        "eval": {"ours_tokens_per_s": eval_tokens / ours_eval["seconds"],
                 "plain_tokens_per_s": eval_tokens / plain["eval_seconds"],
                 "ours_loss": ours_eval["loss"], "plain_loss": plain["eval_loss"],
                 "speedup": plain["eval_seconds"] / ours_eval["seconds"], "ours_processes": opts.processes,
                 "ours_mfu": mfu(eval_tokens / ours_eval["seconds"] / opts.processes, flops["eval"]),
                 "plain_mfu": mfu(eval_tokens / plain["eval_seconds"], flops["eval"])},
    }
    print(table(report))
    print(json.dumps(report))


def table(r: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f} %"

    def gib(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = [f"{r['shape']} {r['method']} ({r['strategy']}), batch {r['batch']} x {r['seq_len']} tokens, "
             f"device {r['device'] or 'CPU'}, peak {r['peak_tflops'] or '-'} TFLOP/s",
             f"{'run':<24}{'path':>6}{'tokens/s':>12}{'step s':>10}{'MFU':>9}{'peak GiB':>10}"]
    for o in r["ours"]:
        lines.append(f"{'ours, ' + str(o['processes']) + ' process(es)':<24}{o['parallel']:>6}"
                     f"{o['tokens_per_s']:>12.1f}{o['step_s']:>10.3f}{pct(o['mfu']):>9}"
                     f"{gib(o['peak_memory_gib']):>10}")
    p = r["plain"]
    lines.append(f"{'plain Trainer + PEFT':<24}{'-':>6}{p['tokens_per_s']:>12.1f}{p['step_s']:>10.3f}"
                 f"{pct(p['mfu']):>9}{gib(p['peak_memory_gib']):>10}")
    e = r["eval"]
    lines.append(f"speed-up (1 device): {r['speedup_1_device']:.2f}x; scaling efficiency: "
                 f"{pct(r['scaling_efficiency'])}")
    lines.append(f"evaluation tokens/s: ours {e['ours_tokens_per_s']:.1f} ({e['ours_processes']} process(es)), "
                 f"plain {e['plain_tokens_per_s']:.1f}: {e['speedup']:.2f}x; MFU {pct(e['ours_mfu'])} / "
                 f"{pct(e['plain_mfu'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

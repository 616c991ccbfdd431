"""`python -m qbench TASKS --out DIR ...`: see benches/quality/run and README.md."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from . import contenders, report, stats, tasks


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benches/quality/run", description=__doc__)
    p.add_argument("tasks", type=Path, nargs="+",
                   help="task files, or directories searched for task files (kind: Task)")
    p.add_argument("--out", type=Path, required=True, help="output directory; re-running resumes it")
    p.add_argument("--python", required=True, help="the trainer venv's python (trainer-image/setup-env)")
    p.add_argument("--gradients", required=True, help="the gradients binary")
    p.add_argument("--hours", type=float, help="training hours per miner (default: each task's spec.hours)")
    p.add_argument("--parallel", type=int, help="gradients run --parallel")
    p.add_argument("--eval-profile", default="fast", choices=("fast", "paper", "production"))
    p.add_argument("--unit", default="cpu", choices=("cpu", "gpu"),
                   help="budget unit: CPU-seconds (rusage) or GPU-seconds (wall × visible GPUs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search, its validation split and the bootstrap")
    p.add_argument("--eta", type=int, default=3, help="successive halving's reduction factor")
    p.add_argument("--rungs", type=int, default=3, help="training budgets per trial (top/eta^(rungs-1) … top)")
    p.add_argument("--startup-trials", type=int, default=4, help="random trials before TPE models the results")
    p.add_argument("--max-trials", type=int, help="stop the search after this many trials even with budget left")
    p.add_argument("--validation-share", type=float, default=0.1, help="share of train the search validates on")
    p.add_argument("--grace-seconds", type=int, default=300, help="gradients run --grace-seconds")
    p.add_argument("--halving-eta", type=int, default=2, choices=(2, 3),
                   help="the halving tournament's spec.halving.eta (the best 1/eta continue)")
    p.add_argument("--halving-rungs", type=int, default=3, choices=range(2, 6), metavar="{2..5}",
                   help="the halving tournament's spec.halving.rungs (slices of the allotment)")
    p.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")
    p.add_argument("--contenders", type=_contenders, default=report.CONTENDERS, metavar="NAME,...",
                   help="which contenders run beside the tournament (default: all of "
                        f"{','.join(report.CONTENDERS)}); e.g. halving alone, to measure its share of B")
    return p.parse_args(argv)


def _contenders(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in report.CONTENDERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown contender {', '.join(unknown) or '(none given)'}; choose from {', '.join(report.CONTENDERS)}")
    return names


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    files = [f for path in args.tasks for f in ([path] if path.is_file() else tasks.find(path))]
    if not files:
        print(f"error: no task file (kind: Task) in {' '.join(map(str, args.tasks))}", file=sys.stderr)
        return 2
    settings = contenders.Settings(
        out=args.out.resolve(), python=args.python, gradients=str(Path(args.gradients).resolve()),
        hours=args.hours, parallel=args.parallel, eval_profile=args.eval_profile, unit=args.unit,
        seed=args.seed, eta=args.eta, rungs=args.rungs, startup_trials=args.startup_trials,
        max_trials=args.max_trials, validation_share=args.validation_share, grace_seconds=args.grace_seconds,
        halving_eta=args.halving_eta, halving_rungs=args.halving_rungs,
    )
    settings.out.mkdir(parents=True, exist_ok=True)
    _check_settings(settings)
    results: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in files:
        task = tasks.load(path)
        if task.name in seen:
            print(f"error: two task files are named {task.name!r} (metadata.name); rename one", file=sys.stderr)
            return 2
        seen.add(task.name)
        if task.miners == 0:
            log(f"{task.name}: skipped ({path}): no inline miners (spec.miners), which `gradients run` needs")
            continue
        entry: dict[str, Any] = {"name": task.name, "task_type": task.task_type, "file": str(path)}
        log(f"{task.name}: tournament ({task.miners} miners)")
        entry["tournament"] = t = contenders.tournament(task, settings)
        log(f"{task.name}: tournament spent B = {t['budget']:.1f} {settings.unit}-s; winner {t['winner']} "
            f"({t['weighted']})")
        if "baseline" in args.contenders:
            log(f"{task.name}: baseline with all of B")
            entry["baseline"] = b = contenders.baseline(task, settings, t)
            log(f"{task.name}: baseline used {b['cost']:.1f}, weighted {b['weighted']}")
        if "search" in args.contenders:
            log(f"{task.name}: TPE + ASHA within B")
            entry["search"] = s = contenders.search(task, settings, t)
            log(f"{task.name}: search used {s['cost']:.1f} in {s['trials']} trials, weighted {s['weighted']}")
        if "halving" in args.contenders and task.task_type in tasks.HALVING_TYPES:
            log(f"{task.name}: tournament with successive halving (eta {args.halving_eta}, {args.halving_rungs} rungs)")
            entry["halving"] = h = contenders.tournament(task, settings, halving=True)
            h["share"] = h["cost"] / t["budget"] if t["budget"] else None
            log(f"{task.name}: halving spent {h['cost']:.1f} ({100 * (h['share'] or 0):.0f} % of B); "
                f"winner {h['winner']} ({h['weighted']})")
        elif "halving" in args.contenders:
            log(f"{task.name}: no halving tournament: {task.task_type} trainers cannot continue from a checkpoint")
        results.append(entry)
    comparisons = [
        stats.compare(c, [(_loss(e["tournament"]), _loss(e[c])) for e in results if c in e],
                      resamples=args.resamples, seed=args.seed)
        for c in report.CONTENDERS
    ]
    text = "\n\n".join([
        "## Per task", *[report.task_table(e, settings.unit) for e in results],
        "## Summary (the tournament's winner against each contender, paired bootstrap over tasks)",
        report.summary_table(comparisons),
    ]) + "\n"
    (settings.out / "report.md").write_text(text)
    (settings.out / "plot.svg").write_text(report.plot_svg(results, comparisons))
    (settings.out / "results.json").write_text(json.dumps(
        {"tasks": [{k: v for k, v in e.items()} for e in results],
         "comparisons": [dataclasses.asdict(c) for c in comparisons],
         "settings": {k: str(v) for k, v in dataclasses.asdict(settings).items()}}, indent=2, default=str))
    print(text)
    log(f"wrote {settings.out}/report.md, plot.svg, results.json")
    return 0


def _loss(contender: dict[str, Any]) -> float:
    value = contender.get("weighted")
    return float("nan") if value is None else float(value)


def _check_settings(settings: contenders.Settings) -> None:
    """A re-run must use the settings the output directory was made with (or it would mix runs)."""
    path = settings.out / "settings.json"
    current = {k: str(v) for k, v in dataclasses.asdict(settings).items() if k not in ("out", "python", "gradients")}
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != current:
            changed = sorted(k for k in current if previous.get(k) != current[k])
            raise SystemExit(f"error: {settings.out} was made with other settings ({', '.join(changed)}); "
                             "use another --out")
    else:
        path.write_text(json.dumps(current, indent=2, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())

"""The contenders of one task, each resumable: a finished one leaves `NAME.json` in the
task's folder and is never run again; an interrupted one starts over (the tournament resumes
inside its run directory, the search replays its finished trials from their folders).

Budget: B is what the tournament spent, measured: its miners' trainings and evaluations (the
evaluations are how it picks its winner). The baseline gets all of B for one training (its
epochs raised until B is spent); the
search gets B for all its trainings and validation evaluations together. The final scoring of
each contender's model on the test and synthetic splits is not part of any budget.

The fourth contender, the tournament with successive halving across miners (`spec.halving`),
is `tournament()` again on a copy of the task with halving on: its own run directory and
meter, its trainings (every slice) and evaluations (every rung's) measured the same way. It
gets no budget: what it spends, as a share of B, is what it saves.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from . import meter, space, tasks, workloads


@dataclass(frozen=True)
class Settings:
    out: Path
    python: str  # the trainer venv's interpreter
    gradients: str  # the `gradients` binary
    hours: float | None  # per-miner budget override; None: the task's
    parallel: int | None
    eval_profile: str
    unit: str  # cpu | gpu
    seed: int
    eta: int  # successive halving's reduction factor
    rungs: int  # training budgets per trial: top / eta^(rungs-1) … top
    startup_trials: int  # TPE's random start
    max_trials: int | None
    validation_share: float
    grace_seconds: int  # gradients run --grace-seconds: a loaded machine's imports alone can take a minute
    halving_eta: int  # the halving tournament's spec.halving.eta
    halving_rungs: int  # ... and spec.halving.rungs


def _save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.rename(path)


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _env(settings: Settings, meter_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env[meter.GPUS_ENV] = str(gpu_count(settings))
    if meter_dir is not None:
        env[meter.METER_DIR_ENV] = str(meter_dir)
    return env


@functools.lru_cache(maxsize=None)
def gpu_count(settings: Settings) -> int:
    if settings.unit != "gpu":
        return 0
    out = subprocess.run([settings.python, "-c", "import torch; print(torch.cuda.device_count())"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def _workload(record: meter.Record, work: Path) -> tuple[str, str] | None:
    """(kind, subject) of a record made inside `work/` (`train-alice-1` → (train, alice))."""
    cwd = Path(record.cwd)
    if cwd.parent != work:
        return None
    kind, _, rest = cwd.name.partition("-")
    subject = rest.rsplit("-", 1)[0]
    return kind, subject


def tournament(task: tasks.Task, settings: Settings, halving: bool = False) -> dict[str, Any]:
    """The tournament as configured, or (`halving`) with successive halving across miners."""
    name = "halving" if halving else "tournament"
    folder = settings.out / task.name
    done = folder / f"{name}.json"
    if (cached := _load(done)) is not None:
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    cut = {"eta": settings.halving_eta, "rungs": settings.halving_rungs} if halving else None
    task_file = folder / ("halving.yaml" if halving else "task.yaml")
    task_file.write_text(yaml.safe_dump(tasks.benchmark_copy(task, settings.hours, cut), sort_keys=False))
    run_dir, meter_dir = folder / name / "run", folder / name / "meter"
    wrapper = meter.write_wrapper(settings.out / "bin" / "python", settings.python)
    argv = [settings.gradients, "run", str(task_file), "--run-dir", str(run_dir),
            "--data-dir", str(settings.out / "store"), "--python", str(wrapper), "--output", "json",
            "--quiet", "--eval-profile", settings.eval_profile, "--grace-seconds", str(settings.grace_seconds)]
    if settings.parallel:
        argv += ["--parallel", str(settings.parallel)]
    (folder / name).mkdir(exist_ok=True)
    returncode = 0
    if not (run_dir / "report.json").is_file():  # written when the run ends; else run (or resume) it
        with open(folder / name / "stderr.log", "ab") as err:
            returncode = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=err,
                                        env=_env(settings, meter_dir)).returncode
        if returncode not in (0, 1):
            raise RuntimeError(f"{task.name}: gradients run exited {returncode}; see {folder}/{name}/stderr.log")
    report = json.loads((run_dir / "report.json").read_text())
    work = run_dir / "work"
    train_cost = eval_cost = train_cpu = train_wall = 0.0
    trainings = evaluations = 0
    base = None
    for record in meter.read_records(meter_dir):
        where = _workload(record, work)
        if where is None or record.kind not in ("train", "evaluate"):
            continue
        kind, subject = where
        if record.kind == "evaluate" and "--score-base" in record.argv:
            base = subject
            continue  # the untrained-base reference row is not part of the tournament
        if record.kind == "train":
            trainings += 1
            train_cost += record.cost(settings.unit)
            train_cpu += record.cpu_s
            train_wall += record.wall_s
        else:
            evaluations += 1
            eval_cost += record.cost(settings.unit)
    winner = _winner(report)
    train_dirs = sorted(d for d in work.iterdir() if d.name.startswith("train-"))
    eval_dirs = sorted(d for d in work.iterdir() if d.name.startswith("evaluate-") and
                       "--score-base" not in workloads.command(d))
    if not train_dirs or not eval_dirs:
        raise RuntimeError(f"{task.name}: the tournament ran no training or evaluation")
    winner_eval = next((d for d in eval_dirs if winner and d.name.startswith(f"evaluate-{winner['miner']}-")), eval_dirs[-1])
    first_train = workloads.command(train_dirs[0])
    # The allotment per miner (under halving, the first slice's --hours is only a part of it).
    hours = float(report.get("hours") or first_train[first_train.index("--hours") + 1])
    result = {
        "contender": name,
        "miners": task.miners if halving else trainings,
        "trainings": trainings,
        "hours_per_miner": hours,
        "budget": train_cost + eval_cost,
        "cost": train_cost + eval_cost,
        "train_cost": train_cost,
        "eval_cost": eval_cost,
        "evaluations": evaluations,
        "cpu_per_wall": train_cpu / train_wall if train_wall else 1.0,
        "mean_train_cost": train_cost / trainings if trainings else 0.0,
        "mean_eval_cost": eval_cost / evaluations if evaluations else 0.0,
        "winner": winner["miner"] if winner else None,
        "config": winner["strategy"] if winner else None,
        "first": winner["first"] if winner else None,
        "second": winner["second"] if winner else None,
        "weighted": winner["weighted"] if winner else None,
        "base": _base_row(report) if base else None,
        "train_template": workloads.command(train_dirs[0]),
        "eval_template": workloads.command(winner_eval),
        "train_data": workloads.command(train_dirs[0])[workloads.command(train_dirs[0]).index("--train-data") + 1],
        "run_dir": str(run_dir),
        "exit_code": returncode,
    }
    _save(done, result)
    return result


def _rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = report.get("rows")
    return list(rows) if isinstance(rows, list) else []


def _row_losses(row: dict[str, Any]) -> tuple[float | None, float | None, float | None]:
    if row.get("test_loss") is None and row.get("text_guided_loss") is not None:
        return row.get("text_guided_loss"), row.get("no_text_loss"), row.get("weighted_loss")
    return row.get("test_loss"), row.get("synth_loss"), row.get("weighted_loss")


def _winner(report: dict[str, Any]) -> dict[str, Any] | None:
    """The report's rank-1 miner (`gradients run --output json`: `rows[]` with `entrant`, `role`, `rank`)."""
    ranked = [r for r in _rows(report) if r.get("role") == "miner" and r.get("rank") is not None]
    if not ranked:
        return None
    best = min(ranked, key=lambda r: r["rank"])
    first, second, weighted = _row_losses(best)
    return {"miner": best.get("entrant"), "strategy": best.get("strategy"), "first": first,
            "second": second, "weighted": weighted}


def _base_row(report: dict[str, Any]) -> dict[str, Any] | None:
    for row in _rows(report):
        if row.get("role") not in ("miner", "baseline") and row.get("weighted_loss") is not None:
            first, second, weighted = _row_losses(row)
            return {"first": first, "second": second, "weighted": weighted}
    return None


def _rate_and_overhead(t: dict[str, Any]) -> tuple[float, float]:
    """The tournament's measured compute per wall second of training, and the per-process
    overhead (start-up, imports, loading) a miner's training cost beyond that."""
    rate = max(t["cpu_per_wall"], 1e-3)
    return rate, max(0.0, t["mean_train_cost"] - rate * t["hours_per_miner"] * 3600)


def _trainer_hours(cost: float, t: dict[str, Any]) -> float:
    """The trainer's wall-clock budget for a compute budget `cost`."""
    rate, overhead = _rate_and_overhead(t)
    return max(cost - overhead, rate * 2.0) / rate / 3600


# AutoTrain's UI runs 3 epochs; on a small dataset they end long before B is spent.
AUTOTRAIN_EPOCHS = 3.0


def fitted_epochs(cost: float, budget: float, epochs: float = AUTOTRAIN_EPOCHS) -> float | None:
    """Whole epochs that spend about `budget` at the rate a run of `epochs` spent `cost`, or None
    when not one more epoch fits. The run's cost includes its start-up (imports, loading), which
    does not grow with epochs, so this rounds down and stays within B."""
    if cost <= 0 or budget * epochs < cost * (epochs + 1):
        return None
    return float(math.floor(epochs * budget / cost))


def baseline(task: tasks.Task, settings: Settings, t: dict[str, Any]) -> dict[str, Any]:
    """AutoTrain's defaults given all of B: its 3 epochs first; when they leave B mostly unspent,
    again with as many epochs as B affords (every other hyperparameter unchanged), stopped at B.
    The 3-epoch run is the calibration and a reference row, outside B like every final scoring."""
    folder = settings.out / task.name / "baseline"
    done = settings.out / task.name / "baseline.json"
    if (cached := _load(done)) is not None:
        return cached
    autotrain = _baseline_run(task, settings, t, folder / "autotrain", epochs=None)
    epochs = None if autotrain.get("stopped_by_deadline") else fitted_epochs(autotrain["cost"], t["budget"])
    if epochs is None:
        result = autotrain
    else:
        result = _baseline_run(task, settings, t, folder / "fitted", epochs=epochs)
        result["autotrain"] = autotrain
    _save(done, result)
    return result


def _baseline_run(task: tasks.Task, settings: Settings, t: dict[str, Any], folder: Path,
                  epochs: float | None) -> dict[str, Any]:
    done = folder / "run.json"
    if (cached := _load(done)) is not None:
        return cached
    budget = t["budget"]
    out = folder / "train" / "out"
    argv = workloads.train_argv(t["train_template"], output=out, strategy="baseline",
                                hours=_trainer_hours(budget, t),
                                overrides=None if epochs is None else {"epochs": epochs})
    record = meter.run([settings.python, *argv], folder / "train", folder / "train",
                       cost_limit=budget, unit=settings.unit, env=_env(settings))
    config = "baseline" if epochs is None else f"baseline, {epochs:g} epochs"
    result: dict[str, Any] = {"contender": "baseline", "config": config, "budget": budget,
                              "cost": record.cost(settings.unit), "train_exit": record.exit_code,
                              "epochs": AUTOTRAIN_EPOCHS if epochs is None else epochs}
    training = out / "training.json"
    if training.is_file():
        info = json.loads(training.read_text())
        result.update(steps=info.get("steps"), stopped_by_deadline=info.get("stopped_by_deadline"))
    result.update(_final(task, settings, t, out / "model", folder / "eval"))
    _save(done, result)
    return result


def _final(task: tasks.Task, settings: Settings, t: dict[str, Any], model: Path, workdir: Path) -> dict[str, Any]:
    """The final scoring: the tournament's evaluator argv, this model, the test and synthetic splits."""
    if not model.is_dir():
        return {"first": None, "second": None, "weighted": None, "failure": "no model"}
    e = workloads.evaluate(settings.python, workloads.eval_argv(t["eval_template"], submission=model),
                           workdir, task.task_type, settings.unit)
    return {"first": e["first"], "second": e["second"], "weighted": e["weighted"], "failure": e["failure"],
            "final_eval_cost": e["cost"]}


def rung_estimate(t: dict[str, Any], hours: float) -> float:
    """What a search rung of `hours` trainer-hours is expected to cost, its validation included:
    the tournament's compute per wall second over those hours plus a process's overhead, but no
    more than a tournament miner's whole training cost. Where the miners end their epochs long
    before their allotment, a trial does too; without the cap, a rung's wall-clock budget priced
    at that rate exceeds all of B and the search could not start one trial. A rung that does run
    longer is stopped at what is left of B all the same."""
    rate, overhead = _rate_and_overhead(t)
    training = min(overhead + rate * hours * 3600, t["mean_train_cost"])
    return training + t["mean_eval_cost"]


def search(task: tasks.Task, settings: Settings, t: dict[str, Any]) -> dict[str, Any]:
    """Optuna's TPE sampler with successive-halving pruning (ASHA), all of it within B.

    Rung r of a trial trains from the base model for `top / eta^(rungs-1-r)` trainer-hours
    (`top` = a tournament miner's hours), then evaluates on a validation split held out of the
    training split; the pruner stops a trial that is not in the best 1/eta at its rung. The
    trainer has no "continue from a checkpoint", so a promoted trial trains again, longer.
    A trial starts only if its next rung's estimated cost fits what is left of B, and each
    training is stopped (SIGTERM, it saves) when the budget left for it is spent.
    """
    import optuna

    folder = settings.out / task.name / "search"
    done = settings.out / task.name / "search.json"
    if (cached := _load(done)) is not None:
        return cached
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = t["budget"]
    train_data, val_data = workloads.split_validation(Path(t["train_data"]), folder / "data",
                                                      settings.validation_share, settings.seed)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=settings.startup_trials),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=settings.eta,
                                                      min_early_stopping_rate=0),
    )
    top = t["hours_per_miner"]
    eval_estimate = t["mean_eval_cost"]
    spent = 0.0
    units: list[dict[str, Any]] = []
    trial_number = 0
    exhausted = False
    while not exhausted and (settings.max_trials is None or trial_number < settings.max_trials):
        trial = study.ask()
        strategy, overrides = space.suggest(trial, task.task_type)
        last: float | None = None
        pruned = False
        for rung in range(settings.rungs):
            hours = top / settings.eta ** (settings.rungs - 1 - rung)
            estimate = rung_estimate(t, hours)
            unit_dir = folder / f"t{trial_number:03d}-r{rung}"
            unit = _load(unit_dir / "unit.json")
            key = {"strategy": strategy, "overrides": overrides, "hours": hours}
            if unit is None or unit.get("key") != key:
                if spent + estimate > budget:
                    exhausted = True
                    break
                unit = _unit(task, settings, t, unit_dir, key, train_data, val_data,
                             cost_limit=budget - spent - eval_estimate)
            spent += unit["cost"]
            unit.update(trial=trial_number, rung=rung)
            units.append(unit)
            if unit["val_loss"] is None:
                break
            last = unit["val_loss"]
            trial.report(last, step=settings.eta ** rung)
            if trial.should_prune():
                pruned = True
                break
        if last is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        elif pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, last)
        trial_number += 1
        if spent >= budget:
            break
    scored = [u for u in units if u["val_loss"] is not None and math.isfinite(u["val_loss"])]
    result: dict[str, Any] = {"contender": "search", "budget": budget, "cost": spent,
                              "trials": len({u["trial"] for u in units}), "units": len(units),
                              "pruned": sum(1 for tr in study.trials if tr.state == optuna.trial.TrialState.PRUNED)}
    if not scored:
        result.update(config=None, first=None, second=None, weighted=None, failure="no trial finished")
    else:
        best = min(scored, key=lambda u: (u["val_loss"], u["trial"], u["rung"]))
        result.update(config=_describe(best), best_trial=best["trial"], best_rung=best["rung"],
                      best_val_loss=best["val_loss"])
        result.update(_final(task, settings, t, Path(best["model"]), folder / "final-eval"))
    result["trials_detail"] = [{k: u[k] for k in ("trial", "rung", "key", "val_loss", "cost")} for u in units]
    _save(done, result)
    return result


def _describe(unit: dict[str, Any]) -> str:
    key = unit["key"]
    o = key["overrides"]
    if "learning_rate" in o:
        return (f"{key['strategy']} lr={o['learning_rate']:.2g} r={o['lora_r']}/{o['lora_alpha']} "
                f"bs={o['batch_size']} ep={o['epochs']:g} {o['scheduler']} (t{unit['trial']} r{unit['rung']})")
    return f"{key['strategy']} {json.dumps(o, sort_keys=True)} (t{unit['trial']} r{unit['rung']})"


def _unit(task: tasks.Task, settings: Settings, t: dict[str, Any], unit_dir: Path, key: dict[str, Any],
          train_data: Path, val_data: Path, cost_limit: float) -> dict[str, Any]:
    """One rung of one trial: train, then evaluate on the validation split."""
    out = unit_dir / "train" / "out"
    argv = workloads.train_argv(t["train_template"], output=out, strategy=key["strategy"], hours=key["hours"],
                                overrides=key["overrides"], train_data=train_data)
    record = meter.run([settings.python, *argv], unit_dir / "train", unit_dir / "train",
                       cost_limit=max(cost_limit, 1.0), unit=settings.unit, env=_env(settings))
    cost = record.cost(settings.unit)
    val: float | None = None
    if (out / "model").is_dir():
        e = workloads.evaluate(settings.python,
                               workloads.eval_argv(t["eval_template"], submission=out / "model",
                                                   heldout=(val_data, val_data)),
                               unit_dir / "eval", task.task_type, settings.unit)
        cost += e["cost"]
        val = e["weighted"]
    unit = {"key": key, "val_loss": val, "cost": cost, "model": str(out / "model"), "train_exit": record.exit_code}
    _save(unit_dir / "unit.json", unit)
    return unit

"""Any task file a user writes: found in a directory, copied with its paths resolved."""

from pathlib import Path

import pytest
import yaml

from qbench import tasks, workloads

ROOT = Path(__file__).resolve().parents[3]


def test_finds_the_examples_task_files_and_nothing_else():
    found = [p.relative_to(ROOT).as_posix() for p in tasks.find(ROOT / "examples")]
    assert found == ["examples/dpo/task.yaml", "examples/grpo/task.yaml", "examples/image/task.yaml",
                     "examples/instruct/task.yaml", "examples/task.yaml"]
    assert tasks.load(ROOT / "examples/task.yaml").miners == 0  # operator-only: the benchmark skips it
    grpo = tasks.load(ROOT / "examples/grpo/task.yaml")
    assert (grpo.name, grpo.task_type, grpo.miners, grpo.hours) == ("grpo-one-word", "grpo", 2, 0.05)


def test_the_copy_has_absolute_paths_no_baseline_and_the_benchmarks_hours(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "t.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "gradients.io/v1alpha1", "kind": "Task", "metadata": {"name": "mine"},
        "spec": {"taskType": "Dpo", "baseModel": {"uri": "${MODELS}/dpo", "paramsB": 0.1},
                 "dataset": {"uri": "../data.jsonl", "syntheticUri": "s3://bucket/synth.jsonl"},
                 "deadline": "2030-01-01T00:00:00Z", "miners": [{"name": "a", "strategy": "dora"}]}}))
    copy = tasks.benchmark_copy(tasks.load(path), hours=0.01)
    spec = copy["spec"]
    assert spec["baseModel"]["uri"] == "${MODELS}/dpo"
    assert spec["dataset"]["uri"] == str(tmp_path / "data.jsonl")
    assert spec["dataset"]["syntheticUri"] == "s3://bucket/synth.jsonl"
    assert spec["baseline"] is False and spec["hours"] == 0.01 and "deadline" not in spec
    assert tasks.load(path).document["spec"]["dataset"]["uri"] == "../data.jsonl"  # the original is untouched
    assert "halving" not in spec
    halved = tasks.benchmark_copy(tasks.load(path), hours=0.01, halving={"eta": 2, "rungs": 3})["spec"]
    assert halved["halving"] == {"eta": 2, "rungs": 3} and halved["hours"] == 0.01


def test_an_unknown_task_type_names_the_file_and_field(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("kind: Task\nmetadata: {name: x}\nspec: {taskType: Video}\n")
    with pytest.raises(ValueError, match="t.yaml: spec.taskType"):
        tasks.load(path)


def test_weighted_loss_uses_the_mechanisms_weights():
    assert tasks.weighted("dpo", 1.0, 2.0) == pytest.approx(1.3)
    assert tasks.weighted("image", 0.4, 0.8) == pytest.approx(0.7)
    assert tasks.weighted("grpo", 1.0, None) is None


def test_argv_rewriting():
    argv = ["-m", "gradients_trainer", "evaluate", "--submission", "/s", "--submission-digest", "sha256:x",
            "--test-data", "/t", "--synth-data", "/y", "--seed", "42"]
    out = workloads.eval_argv(argv, submission=Path("/m"), heldout=(Path("/v"), Path("/v")))
    assert out == ["-m", "gradients_trainer", "evaluate", "--submission", "/m", "--test-data", "/v",
                   "--synth-data", "/v", "--seed", "42"]
    train = workloads.train_argv(["train", "--hours", "0.1", "--output", "/o", "--strategy", "a"],
                                 output=Path("/p"), strategy="dora", hours=0.5, overrides={"lora_r": 4})
    assert train == ["train", "--hours", "0.50000000", "--output", "/p", "--strategy", "dora",
                     "--strategy-overrides", '{"lora_r": 4}']


def test_validation_split_is_seeded_and_disjoint(tmp_path):
    src = tmp_path / "train.jsonl"
    src.write_text("".join(f'{{"i": {i}}}\n' for i in range(50)))
    a = workloads.split_validation(src, tmp_path / "a", 0.1, seed=1)
    b = workloads.split_validation(src, tmp_path / "b", 0.1, seed=1)
    assert a[1].read_text() == b[1].read_text()
    train, val = (set(p.read_text().splitlines()) for p in a)
    assert len(val) == 5 and len(train) == 45 and not train & val
    images = tmp_path / "images"
    images.mkdir()
    for i in range(10):
        (images / f"{i}.png").write_bytes(b"x")
        (images / f"{i}.txt").write_text("caption")
    t, v = workloads.split_validation(images, tmp_path / "c", 0.1, seed=1)
    assert len(list(v.iterdir())) == 8 and len(list(t.iterdir())) == 12  # 4 images, 6 images, with captions

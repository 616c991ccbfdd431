"""Compute is measured from the kernel (real child processes, no stand-ins)."""

import os
import subprocess
import sys

from qbench import meter

BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def test_the_wrapper_records_the_childs_cpu_and_exits_as_it_did(tmp_path):
    wrapper = meter.write_wrapper(tmp_path / "bin" / "python", sys.executable)
    env = dict(os.environ, **{meter.METER_DIR_ENV: str(tmp_path / "records")})
    code = BUSY.format(s=0.3) + "raise SystemExit(3)\n"
    proc = subprocess.run([str(wrapper), "-c", code], cwd=tmp_path, env=env)
    assert proc.returncode == 3
    [record] = meter.read_records(tmp_path / "records")
    assert record.exit_code == 3 and record.cwd == str(tmp_path)
    assert record.argv[:2] == [sys.executable, "-c"] and record.kind == "other"
    assert 0.3 <= record.cpu_s < 5 and record.wall_s >= 0.3


def test_a_cost_limit_stops_the_process_with_sigterm(tmp_path):
    record = meter.run([sys.executable, "-c", BUSY.format(s=60)], tmp_path, tmp_path / "log", cost_limit=0.5)
    assert record.exit_code == -15
    assert 0.5 <= record.cpu_s < 10


def test_kind_comes_from_the_trainers_argv():
    def rec(*argv):
        return meter.Record(argv=["py", *argv], cwd="/", cpu_s=1, wall_s=2, gpus=2, exit_code=0)

    assert rec("-m", "gradients_trainer", "train", "--hours", "1").kind == "train"
    assert rec("-m", "gradients_trainer", "evaluate").kind == "evaluate"
    assert rec("-m", "gradients_trainer.preflight").kind == "preflight"
    assert rec("-m", "gradients_trainer", "train").cost("gpu") == 4 and rec().cost("cpu") == 1


def test_gpu_seconds_count_the_gpus_the_runner_gave_the_workload(monkeypatch):
    monkeypatch.setenv(meter.GPUS_ENV, "8")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert meter._gpus() == 8
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-a,GPU-b")
    assert meter._gpus() == 2
    monkeypatch.setenv(meter.GPUS_ENV, "0")
    assert meter._gpus() == 0

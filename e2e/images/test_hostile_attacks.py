"""The hostile miner's verdicts are right (scripts/test runs this; needs root for namespaces).

attacks.py runs as uid 1000 in private mount, pid and network namespaces (util-linux `unshare`),
on a claim laid out as on the cluster. As a pod sees it (base model and training inputs
read-only, its own output writable) the attacks on the data are blocked; with the whole claim
mounted (a broken builder) they must report escapes, or the real-node suite's `0 escapes` would
prove nothing. This sandbox does not change root, so the node's paths stay visible: the
`heldout-proc` attack must see that too. Run: python3 -m unittest discover -s e2e/images
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
ATTACKS = HERE / "hostile-miner/attacks.py"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else shutil.which("python3") or "python3"


# One float32 tensor of two elements.
_HEADER = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
SAFETENSORS = len(_HEADER).to_bytes(8, "little") + _HEADER + bytes(8)


def run(mode: str, leaky: bool) -> tuple[str, Path]:
    top = Path(tempfile.mkdtemp(prefix="hostile-test-"))
    top.chmod(0o755)
    claim, pod, task = top / "claim", top / "pod", top / "claim/tournaments/ns/t"
    files: dict[Path, str | bytes] = {
             claim / "models/instruct/config.json": '{"vocab_size": 10}', claim / "models/instruct/model.safetensors": SAFETENSORS,
             task / "data/training/train.jsonl": "{}", task / "data/heldout/test.jsonl": "held out",
             task / "models/rival/model/model.safetensors": "w"}
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for d in (task / "models/me", pod / "base-model", pod / "inputs", pod / "output", pod / "artifacts"):
        d.mkdir(parents=True, exist_ok=True)
    shutil.copy(ATTACKS, top / "attacks.py")
    subprocess.run(["chown", "-R", "1000:1000", str(claim), str(pod)], check=True)
    mounts = [f"mount --bind {claim}/models/instruct {pod}/base-model", f"mount -o remount,bind,ro {pod}/base-model",
              f"mount --bind {task}/data/training {pod}/inputs", f"mount -o remount,bind,ro {pod}/inputs",
              f"mount --bind {task}/models/me {pod}/output"]
    if leaky:
        mounts.append(f"mount --bind {claim} {pod}/artifacts")
    trainer = (f"cd {pod} && setpriv --reuid=1000 --regid=1000 --clear-groups --no-new-privs {PYTHON} {top}/attacks.py "
               f"{mode} train --task-type instruct --base-model {pod}/base-model --train-data {pod}/inputs/train.jsonl "
               f"--hours 0.1 --output {pod}/output --seed 42")
    script = " && ".join(["mount --make-rprivate /", *mounts, trainer])
    out = subprocess.run(["unshare", "--mount", "--pid", "--net", "--fork", "--mount-proc", "sh", "-c", script],
                         capture_output=True, text=True, timeout=300)
    return out.stdout + out.stderr, top


def verdicts(log: str) -> dict[str, str]:
    return dict(re.findall(r"^attack ([\w-]+): (\w+)", log, re.M))


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare"), "needs root and util-linux unshare (namespaces)")
class HostileMinerTest(unittest.TestCase):
    def tearDown(self) -> None:
        shutil.rmtree(getattr(self, "top", "/nonexistent"), ignore_errors=True)

    def test_a_pod_like_view_blocks_the_data_attacks_and_the_models_are_hostile(self) -> None:
        log, self.top = run("refused", leaky=False)
        seen = verdicts(log)
        self.assertEqual(len(seen), 11, log)
        self.assertNotIn("crashed", log)
        for name in ("heldout-mounts", "heldout-dotdot", "heldout-env", "write-rivals-and-eval-inputs",
                     "cloud-metadata", "api-server", "kubelet", "dns", "other-pods", "privilege"):
            self.assertEqual(seen[name], "blocked", f"{name}: {log}")
        self.assertEqual(seen["heldout-proc"], "ESCAPED", "the node's paths are visible without a new root")
        self.assertIn("\n11 attacks, 1 escapes\n", log)
        model = self.top / "claim/tournaments/ns/t/models/me/model"
        self.assertTrue((model / "tokenizer.json.fifo").is_fifo())
        self.assertTrue((model / "train.jsonl").is_symlink())
        self.assertGreater((model / "model-00002-of-00002.safetensors").stat().st_size, 1 << 30)
        # The daemon died with its pid namespace: no heartbeat after the run.
        alive = self.top / "claim/tournaments/ns/t/models/me/HOSTILE-alive"
        before = len(list(alive.iterdir()))
        time.sleep(1)
        self.assertEqual(len(list(alive.iterdir())), before)
        self.assertEqual([p for p in self.top.joinpath("claim").rglob("HOSTILE-*") if "/models/me/" not in str(p)], [])

    def test_the_whole_claim_in_view_is_reported_as_escapes(self) -> None:
        log, self.top = run("tamper", leaky=True)
        seen = verdicts(log)
        for name in ("heldout-mounts", "write-rivals-and-eval-inputs"):
            self.assertEqual(seen[name], "ESCAPED", f"{name}: {log}")
        self.assertIn("escaped: heldout-mounts", log)
        config = (self.top / "claim/tournaments/ns/t/models/me/model/config.json").read_text()
        self.assertIn('"rms_norm_eps": 1000.0', config)
        self.assertNotIn("crashed", log)
        weights = (self.top / "claim/tournaments/ns/t/models/me/model/model.safetensors").read_bytes()
        self.assertNotEqual(weights, SAFETENSORS, "one weight nudged: a fine-tune, not the base's copy")


if __name__ == "__main__":
    unittest.main()

"""The local image build and the Dockerfiles install the same things (scripts/test runs this).

The local build executes each Dockerfile's final stage (e2e/images/dockerfile-build); these
tests check that it executes every instruction there is, refuses what it cannot execute (so a
Dockerfile cannot gain a step the local build silently skips), and that the images install the
pinned sets the tests use. Run: python3 -m unittest discover -s e2e/images -p 'test_*.py'
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import stat
import tarfile
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
_loader = importlib.machinery.SourceFileLoader("dockerfile_build", str(HERE / "dockerfile-build"))
_spec = importlib.util.spec_from_loader("dockerfile_build", _loader)
assert _spec is not None
db = importlib.util.module_from_spec(_spec)
sys.modules["dockerfile_build"] = db  # dataclasses look their module up
_loader.exec_module(db)

# Every Dockerfile e2e/images/build builds, with its context.
LOCAL_BUILDS = {
    "operator": ROOT / "Dockerfile",
    "trainer-cpu": ROOT / "trainer-image/Dockerfile.cpu",
    "pause": HERE / "pause/Dockerfile",
    "python-test": HERE / "python-test/Dockerfile",
}


def dockerfile(text: str) -> Path:
    f = tempfile.NamedTemporaryFile("w", suffix=".Dockerfile", delete=False)
    f.write(text)
    f.close()
    return Path(f.name)


class RecipesTest(unittest.TestCase):
    def test_every_instruction_of_every_local_build_is_executed(self) -> None:
        for name, path in LOCAL_BUILDS.items():
            with self.subTest(name):
                steps = db.plan(path)
                final = db.final_stage(db.parse(path.read_text()))
                self.assertEqual(len(steps), len(final), f"{name}: one step per instruction")
                self.assertIn(name, (ROOT / "e2e/images/build").read_text(), "build knows the image")

    def test_the_cpu_and_cuda_trainer_images_install_the_pinned_requirements(self) -> None:
        for path in (ROOT / "trainer-image/Dockerfile.cpu", ROOT / "trainer-image/Dockerfile"):
            with self.subTest(path.name):
                runs = [i.args for i in db.parse(path.read_text()) if i.op == "RUN"]
                self.assertTrue(any("pip install -r requirements.txt" in r for r in runs), runs)
                copies = [i.args for i in db.parse(path.read_text()) if i.op == "COPY"]
                self.assertIn("requirements.txt ./", copies)

    def test_debian_packages_come_from_the_one_list_the_dockerfile_copies(self) -> None:
        for path in (ROOT / "trainer-image/Dockerfile.cpu", HERE / "python-test/Dockerfile"):
            with self.subTest(str(path)):
                steps = db.plan(path)
                self.assertIn("COPY debian-packages.txt /etc/gradients/debian-packages.txt", steps)
                installs = [s for s in steps if "apt-get install" in s]
                self.assertEqual(len(installs), 1, steps)
                self.assertIn("xargs -a /etc/gradients/debian-packages.txt apt-get install", installs[0])
                listed = (path.parent / "debian-packages.txt").read_text().split()
                self.assertTrue(listed, "a non-empty package list")

    def test_the_operator_image_is_the_cargo_binary_on_debian_as_a_non_root_user(self) -> None:
        steps = db.plan(ROOT / "Dockerfile")
        self.assertEqual(steps[0], "FROM debian minbase bookworm")
        self.assertIn("COPY --from=build /src/target/release/gradients /usr/local/bin/gradients", steps)
        self.assertIn("USER 65532:65532", steps)

    def test_the_hostile_miner_is_the_trainer_image_plus_its_attacks(self) -> None:
        trainer = ROOT / "trainer-image/Dockerfile.cpu"
        bases = {"gradients.local/trainer-cpu": (trainer, ROOT / "trainer-image")}
        steps = db.plan(HERE / "hostile-miner/Dockerfile", bases)
        self.assertEqual(steps[: len(db.plan(trainer))], db.plan(trainer), "every trainer-cpu step first")
        self.assertIn("COPY attacks.py /opt/hostile/attacks.py", steps)
        self.assertIn("hostile-miner", (ROOT / "e2e/images/build").read_text(), "build knows the image")
        with self.assertRaisesRegex(db.BuildError, "only debian"):
            db.plan(HERE / "hostile-miner/Dockerfile")  # a base nobody gave is refused

    def test_an_instruction_the_builder_cannot_execute_is_refused_with_its_line(self) -> None:
        cases = {
            "FROM debian:bookworm-slim\nADD https://example.invalid/x /x\n": ":2: ADD is not supported",
            "FROM ubuntu:22.04\n": "FROM ubuntu:22.04: only debian",
            "FROM debian:bookworm\nRUN --network=none true\n": "line 2: RUN --network=none is not supported",
            "FROM debian:bookworm\nRUN --mount=type=secret,id=x true\n": "line 2: only RUN --mount=type=cache",
            "FROM debian:bookworm\nCOPY --link a /a\n": "line 2: COPY --link is not supported",
            "FROM debian:bookworm\nHEALTHCHECK CMD true\n": "HEALTHCHECK is not supported",
        }
        for text, message in cases.items():
            with self.subTest(text):
                with self.assertRaises(db.BuildError) as err:
                    db.plan(dockerfile(text))
                self.assertIn(message, str(err.exception))

    def test_only_the_final_stage_is_built_and_continuations_join(self) -> None:
        path = dockerfile(
            "FROM rust:1 AS build\nRUN cargo build\n\nFROM scratch\n# a comment\n"
            "ENV A=1 \\\n    B=two\nCOPY --from=build /x /y\nENTRYPOINT [\"/y\"]\n"
        )
        self.assertEqual(db.plan(path), ["FROM scratch", "ENV A=1  B=two", "COPY --from=build /x /y", 'ENTRYPOINT ["/y"]'])
        self.assertEqual(db.parse_env("A=1  B=two"), {"A": "1", "B": "two"})


@unittest.skipUnless(os.geteuid() == 0, "mknod of a whiteout needs root")
class LayerTest(unittest.TestCase):
    def test_overlay_whiteouts_become_oci_whiteouts_and_come_back(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            diff = Path(tmp, "layer/diff")
            (diff / "etc").mkdir(parents=True)
            (diff / "etc/kept").write_text("kept")
            os.mknod(diff / "etc/removed", stat.S_IFCHR, os.makedev(0, 0))
            digest = db.write_layer_tar(diff, Path(tmp, "layer/layer.tar"))
            self.assertTrue(digest.startswith("sha256:"))
            names = tarfile.open(Path(tmp, "layer/layer.tar")).getnames()
            self.assertIn("etc/.wh.removed", names)
            self.assertIn("etc/kept", names)
            self.assertNotIn("etc/removed", names)
            # A pruned layer is re-extracted as an overlay lower with the whiteout restored.
            db.prune(db.Image(layers=[Path(tmp, "layer")]))
            self.assertFalse(diff.exists())
            db.ensure_diff(Path(tmp, "layer"))
            self.assertEqual((diff / "etc/kept").read_text(), "kept")
            self.assertTrue(stat.S_ISCHR((diff / "etc/removed").lstat().st_mode))


if __name__ == "__main__":
    unittest.main()

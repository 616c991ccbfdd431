"""Image evaluation: named profiles per pipeline family, out-of-memory back-off.

Out-of-memory is injected (a GPU condition that cannot happen on this CPU): the denoiser
raises ``torch.cuda.OutOfMemoryError`` for batches above a size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import Data, evaluate

from gradients_trainer.evaluate import image as image_eval


def test_every_family_has_named_profiles() -> None:
    for family, profiles in image_eval.PROFILES.items():
        assert set(profiles) == {"production", "paper", "fast"}, family
        prod = profiles["production"]
        assert len(prod.strengths) == 1 and prod.seeds == 10, family  # one strength, 10 seeds
        assert len(profiles["paper"].strengths) == 9
    assert image_eval.PROFILES["sdxl"]["production"] == image_eval.ImageProfile((0.9,), 10, 20, 8.0)
    assert image_eval.PROFILES["flux"]["production"].guidance > 1.0  # not fixed at 1.0


def oom_above(unet: Any, limit: int) -> None:
    import torch

    forward = unet.forward

    def guarded(sample: Any, *a: Any, **kw: Any) -> Any:
        if sample.shape[0] > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return forward(sample, *a, **kw)

    unet.forward = guarded


def test_batches_back_off_and_losses_do_not_change(data: Data, image_base: Path) -> None:
    from gradients_trainer.data import load_image_folder
    from gradients_trainer.image import load_pipeline

    items = load_image_folder(data.img_test, "--test-data")
    profile = image_eval.PROFILES["sdxl"]["fast"]
    pipe = load_pipeline(image_base)
    reference = image_eval.reconstruction_losses(pipe, items, profile, 42)
    oom_above(pipe.unet, 1)  # guidance is off in the fast profile: one image per call fits
    batches = image_eval.Batches()
    backed_off = image_eval.reconstruction_losses(pipe, items, profile, 42, batches=batches)
    assert batches.size == 1 and batches.backoffs == 3  # 8 -> 4 -> 2 -> 1
    assert backed_off == pytest.approx(reference, rel=1e-5)


def test_out_of_memory_at_one_image_is_the_evaluators_failure(data: Data, image_base: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def no_memory(*a: Any, **kw: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(image_eval, "unet_eps", no_memory)
    result = evaluate("image", image_base, None, data.img_test, data.img_test)
    assert result["ok"] is False and result["category"] == "evaluator", result
    assert result["failure"].startswith("resources: the evaluator ran out of memory"), result

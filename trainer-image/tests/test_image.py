"""Image (diffusion LoRA) end to end, and the image failed-check cases."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import Data, evaluate, run_cli, train


def img_eval(data: Data, base: Path, sub: Path | None) -> dict:
    return evaluate("image", base, sub, data.img_test, data.img_test)


@pytest.fixture(scope="module")
def img_lora(data: Data, image_base: Path, workdir: Path) -> Path:
    out = workdir / "img_lora"
    summary = train("image", image_base, data.img_train, out, "lora-fast")
    assert summary["method"] == "lora" and summary["steps"] > 0
    return out / "model"


def test_image_lora_improves_on_base(data: Data, image_base: Path, img_lora: Path) -> None:
    assert '"StableDiffusionXLPipeline"' in (image_base / "model_index.json").read_text()
    assert [p.name for p in img_lora.iterdir()] == ["pytorch_lora_weights.safetensors"]
    sub = img_eval(data, image_base, img_lora)
    base = img_eval(data, image_base, None)
    assert sub["ok"] is True, sub
    assert sub["test_loss"] is None and sub["synth_loss"] is None
    assert sub["text_guided_loss"] < base["text_guided_loss"], (sub, base)
    assert sub["no_text_loss"] < base["no_text_loss"], (sub, base)


@pytest.mark.parametrize(("arch", "cls"), [("sd", "StableDiffusionPipeline"), ("flux", "FluxPipeline")])
def test_image_other_architectures(arch: str, cls: str, data: Data, workdir: Path) -> None:
    base = workdir / f"{arch}_base"
    assert run_cli("make-base-model", "--task-type", "image", "--architecture", arch,
                   "--output", base, "--pretrain-data", data.img_pretrain).rc == 0
    assert f'"{cls}"' in (base / "model_index.json").read_text()
    out = workdir / f"{arch}_lora"
    train("image", base, data.img_train, out, "lora-fast")
    sub = img_eval(data, base, out / "model")
    assert sub["ok"] is True, sub
    assert sub["no_text_loss"] < img_eval(data, base, None)["no_text_loss"]


def test_image_baseline_from_zip_stops_at_deadline(data: Data, image_base: Path, workdir: Path) -> None:
    archive = workdir / "train.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(data.img_train.iterdir()):
            zf.write(p, p.name)
    out = workdir / "img_base"
    summary = train("image", image_base, archive, out, "baseline", hours=6 / 3600)
    assert summary["strategy"] == "baseline" and summary["stopped_by_deadline"] is True
    assert (out / "model" / "pytorch_lora_weights.safetensors").is_file()


def failed(result: dict, check: str, words: str) -> None:
    assert result["ok"] is False and result["text_guided_loss"] is None
    bad = [c for c in result["checks"] if not c["ok"]]
    assert bad and bad[-1]["name"] == check, result
    assert words in result["failure"], result


def test_image_zero_lora_is_not_a_finetune(data: Data, image_base: Path, img_lora: Path, workdir: Path) -> None:
    from safetensors.torch import load_file, save_file

    sub = workdir / "img_zero"
    sub.mkdir()
    tensors = load_file(str(img_lora / "pytorch_lora_weights.safetensors"))
    zeroed = {k: (v * 0 if "lora_B" in k else v) for k, v in tensors.items()}
    save_file(zeroed, str(sub / "pytorch_lora_weights.safetensors"))
    failed(img_eval(data, image_base, sub), "is_fine_tune", "not a fine-tune")


def test_image_text_lora_is_wrong_architecture(data: Data, image_base: Path, text_base: Path, workdir: Path) -> None:
    from safetensors.torch import save_file
    import torch

    sub = workdir / "img_wrong"
    sub.mkdir()
    save_file({"unet.mid_block.attentions.0.proj_in.lora_A.weight": torch.ones(4, 123),
               "unet.mid_block.attentions.0.proj_in.lora_B.weight": torch.ones(64, 4)},
              str(sub / "pytorch_lora_weights.safetensors"))
    failed(img_eval(data, image_base, sub), "architecture", "does not fit")
    failed(img_eval(data, image_base, text_base), "architecture", "")


def test_image_pickle_rejected(data: Data, image_base: Path, img_lora: Path, workdir: Path) -> None:
    import torch

    sub = workdir / "img_pickle"
    shutil.copytree(img_lora, sub)
    torch.save({"w": torch.zeros(1)}, sub / "pytorch_lora_weights.ckpt")
    failed(img_eval(data, image_base, sub), "no_pickle", "pytorch_lora_weights.ckpt")


def test_image_missing_caption_exits_2(data: Data, image_base: Path, workdir: Path) -> None:
    folder = workdir / "no_caption"
    shutil.copytree(data.img_train, folder)
    (folder / "img03.txt").unlink()
    res = run_cli("train", "--task-type", "image", "--base-model", image_base, "--train-data",
                  folder, "--hours", "1", "--output", workdir / "q")
    assert res.rc == 2

"""``make-base-model``: tiny real-architecture checkpoints built locally (no downloads).

Text: a 2-layer Llama (or Qwen2) with a byte-level tokenizer built with ``tokenizers``,
optionally pre-trained for a few dozen steps on ``--pretrain-data``.
Image: a Stable-Diffusion-style pipeline (tiny UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, CLIPTokenizer, DDIM scheduler), optionally warmed up on ``--pretrain-data``.
Everything is saved with ``save_pretrained`` as safetensors and is deterministic per seed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from .contract import InputError, TaskType, log

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build_tokenizer(model_max_length: int = 512) -> Any:
    """A byte-level tokenizer (256 byte symbols + 4 specials), no merges, BOS prepended."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=model_max_length,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )


TEXT_SIZES: dict[str, dict[str, int]] = {
    # tiny: tests and CPU demos (~0.1 M parameters); small: GPU throughput checks (~25 M).
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512),
    "small": dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048),
}


def text_config(architecture: str, vocab_size: int, size: str = "tiny") -> Any:
    from transformers import LlamaConfig, Qwen2Config

    if size not in TEXT_SIZES:
        raise InputError("--size", f"unknown size {size!r} ({', '.join(TEXT_SIZES)})")
    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        **TEXT_SIZES[size],
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    if architecture == "llama":
        return LlamaConfig(**common)
    if architecture == "qwen2":
        return Qwen2Config(**common)
    raise InputError("--architecture", f"unknown architecture '{architecture}' (llama, qwen2)")


def _pretrain_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError("--pretrain-data", f"file not found: {path}")
    texts: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                texts.append(line)
                continue
            texts.append(" ".join(str(v) for v in row.values() if isinstance(v, str)))
        else:
            texts.append(line)
    if not texts:
        raise InputError("--pretrain-data", f"{path.name}: no text")
    return texts


def pretrain_text(model: Any, tokenizer: Any, texts: list[str], steps: int, seed: int,
                  lr: float = 3e-3) -> float:
    import torch

    gen = torch.Generator().manual_seed(seed)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    enc = [tokenizer(t + tokenizer.eos_token, add_special_tokens=True)["input_ids"][:128]
           for t in texts]
    loss_value = float("nan")
    for _ in range(steps):
        idx = torch.randint(0, len(enc), (8,), generator=gen).tolist()
        batch = [enc[i] for i in idx]
        width = max(len(b) for b in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        loss_value = out.loss.item()
    model.eval()
    return loss_value


def make_text_base(
    output: Path, seed: int, pretrain: Path | None, architecture: str, steps: int,
    size: str = "tiny",
) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, GenerationConfig

    seed_everything(seed)
    tokenizer = build_tokenizer()
    config = text_config(architecture, vocab_size=len(tokenizer), size=size)
    model = AutoModelForCausalLM.from_config(config)
    info: dict[str, Any] = {"architecture": architecture, "parameters": model.num_parameters()}
    if pretrain is not None:
        info["pretrain_loss"] = pretrain_text(model, tokenizer, _pretrain_texts(pretrain),
                                              steps, seed, 3e-3 if size == "tiny" else 5e-4)
    model.generation_config = GenerationConfig(
        bos_token_id=1, eos_token_id=2, pad_token_id=0, do_sample=False
    )
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
    return info


# ----------------------------------------------------------------------------- image


def build_clip_tokenizer(directory: Path) -> Any:
    """A CLIP BPE tokenizer over the byte alphabet (each byte a symbol, also with ``</w>``), no merges.

    The alphabet is GPT-2's byte-to-unicode table, which CLIP's tokenizer uses; ``tokenizers``
    exposes it (transformers 5 no longer does). The files are written too, as a checkpoint has them."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for sym in symbols:
        vocab[sym] = len(vocab)
    for sym in symbols:
        vocab[sym + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _clip_config(tokenizer: Any) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=len(tokenizer) - 2,
        eos_token_id=len(tokenizer) - 1,
        pad_token_id=len(tokenizer) - 1,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=77,
        projection_dim=32,
    )


def make_image_base(
    output: Path, seed: int, pretrain: Path | None, steps: int, architecture: str = "sdxl"
) -> dict[str, Any]:
    """A tiny SD (``sd``) or SDXL (``sdxl``: two text encoders, text-time embeddings)."""
    import tempfile

    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    if architecture not in ("sd", "sdxl", "flux"):
        raise InputError("--architecture",
                         f"image architectures are sd, sdxl and flux, not {architecture!r}")
    seed_everything(seed)
    if architecture == "flux":
        return _save_image_pipeline(_flux_pipeline(seed), output, pretrain, steps, seed,
                                    {"architecture": "flux-tiny"})
    xl = architecture == "sdxl"
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_clip_tokenizer(Path(tmp))
    text_encoder = CLIPTextModel(_clip_config(tokenizer))
    unet_kwargs: dict[str, Any] = dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64 if xl else 32,
        attention_head_dim=4,
        norm_num_groups=16,
    )
    if xl:
        unet_kwargs.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32,
            use_linear_projection=True,
        )
    unet = UNet2DConditionModel(**unet_kwargs)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe: Any
    if xl:
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=CLIPTextModelWithProjection(_clip_config(tokenizer)),
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=unet,
            scheduler=scheduler,
        )
    else:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    return _save_image_pipeline(pipe, output, pretrain, steps, seed,
                                {"architecture": f"{architecture}-tiny"})


def _flux_pipeline(seed: int) -> Any:
    from .flux import build_pipeline

    return build_pipeline(seed)


def _save_image_pipeline(pipe: Any, output: Path, pretrain: Path | None, steps: int, seed: int,
                         info: dict[str, Any]) -> dict[str, Any]:
    if pretrain is not None:
        from .image import pretrain_pipeline

        info.update(pretrain_pipeline(pipe, pretrain, steps, seed))
    modules: list[Any] = [m for m in (getattr(pipe, "unet", None), getattr(pipe, "transformer", None),
                                      pipe.vae, pipe.text_encoder,
                                      getattr(pipe, "text_encoder_2", None)) if m is not None]
    for module in modules:
        module.eval()
        for p in module.parameters():
            p.data = p.data.contiguous()
    output.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(output, safe_serialization=True)
    info["parameters"] = int(sum(p.numel() for m in modules for p in m.parameters()))
    return info


def make_base_model(
    task: TaskType,
    output: Path,
    seed: int,
    pretrain: Path | None,
    architecture: str = "llama",
    steps: int = 40,
    size: str = "tiny",
) -> dict[str, Any]:
    log(f"building tiny {task.value} base model in {output}")
    if task is TaskType.IMAGE:
        return make_image_base(output, seed, pretrain, steps,
                               "sdxl" if architecture in ("", "llama") else architecture)
    return make_text_base(output, seed, pretrain, architecture, steps, size)

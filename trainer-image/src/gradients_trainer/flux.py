"""Flux-style pipelines (rectified flow transformer, CLIP + T5 text encoders).

Training objective: flow matching, ``x_σ = (1−σ)·x0 + σ·ε`` and the transformer predicts
``ε − x0``. Reconstruction (evaluation): Euler steps from σ = strength down to 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_SEQUENCE_LENGTH = 77
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
LORA_TARGETS_EXTENDED = LORA_TARGETS + ["add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                                        "ff.net.0.proj", "ff.net.2", "proj_mlp", "proj_out"]


def is_flux(pipe: Any) -> bool:
    return getattr(pipe, "transformer", None) is not None and getattr(pipe, "unet", None) is None


@dataclass
class FluxCond:
    embeds: Any
    pooled: Any
    text_ids: Any

    def select(self, idx: Any) -> FluxCond:
        return FluxCond(self.embeds[idx], self.pooled[idx], self.text_ids)


def encode(pipe: Any, captions: list[str]) -> FluxCond:
    import torch

    with torch.no_grad():
        embeds, pooled, text_ids = pipe.encode_prompt(
            prompt=captions, prompt_2=None, device=pipe.device, num_images_per_prompt=1,
            max_sequence_length=min(MAX_SEQUENCE_LENGTH, pipe.tokenizer_2.model_max_length),
        )
    return FluxCond(embeds, pooled, text_ids)


def to_latents(pipe: Any, raw: Any) -> Any:
    cfg = pipe.vae.config
    return (raw - (cfg.shift_factor or 0.0)) * cfg.scaling_factor


def from_latents(pipe: Any, latents: Any) -> Any:
    cfg = pipe.vae.config
    return latents / cfg.scaling_factor + (cfg.shift_factor or 0.0)


def velocity(pipe: Any, transformer: Any, x: Any, sigma: Any, cond: FluxCond,
             guidance_scale: float = 1.0) -> Any:
    """Transformer prediction (ε − x0) for latents ``x`` [B, C, H, W] at noise level σ [B]."""
    import torch

    b, c, h, w = x.shape
    packed = pipe._pack_latents(x, b, c, h, w)
    img_ids = pipe._prepare_latent_image_ids(b, h // 2, w // 2, x.device, x.dtype)
    guidance = None
    if getattr(transformer.config, "guidance_embeds", False):
        guidance = torch.full((b,), guidance_scale, device=x.device, dtype=x.dtype)
    out = transformer(hidden_states=packed, timestep=sigma.to(x.dtype), guidance=guidance,
                      pooled_projections=cond.pooled, encoder_hidden_states=cond.embeds,
                      txt_ids=cond.text_ids, img_ids=img_ids, return_dict=False)[0]
    # unpack [B, (H/2)(W/2), C*4] -> [B, C, H, W]
    out = out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return out.reshape(b, c, h, w)


def training_loss(pipe: Any, transformer: Any, x0: Any, cond: FluxCond, gen: Any) -> Any:
    import torch

    noise = torch.randn(x0.shape, generator=gen).to(x0)
    sigma = torch.sigmoid(torch.randn((x0.shape[0],), generator=gen)).to(x0)  # logit-normal
    s = sigma.view(-1, 1, 1, 1)
    pred = velocity(pipe, transformer, (1 - s) * x0 + s * noise, sigma, cond)
    return torch.nn.functional.mse_loss(pred.float(), (noise - x0).float())


def reconstruct(pipe: Any, x0: Any, cond: FluxCond, strength: float, steps: int, noise: Any,
                guidance: float = 1.0) -> Any:
    """Noise ``x0`` to σ = strength and integrate back to σ = 0 with Euler steps."""
    import torch

    n = max(1, int(round(steps * strength)))
    sigmas = torch.linspace(strength, 0.0, n + 1, device=x0.device)
    x = (1 - strength) * x0 + strength * noise
    with torch.no_grad():
        for i in range(n):
            sig = sigmas[i].expand(x.shape[0])
            v = velocity(pipe, pipe.transformer, x, sig, cond, guidance)
            x = x + (sigmas[i + 1] - sigmas[i]) * v
    return x


def t5_vocab() -> list[tuple[str, float]]:
    """A SentencePiece-style Unigram vocabulary for the tiny T5: T5's three specials, the word
    boundary ``▁`` and every printable ASCII character (captions are plain text; anything else
    is ``<unk>``). One piece per character, so the segmentation is unique."""
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    return specials + [(chr(c), -3.0) for c in range(33, 127)]


def build_pipeline(seed: int) -> Any:
    """A tiny FluxPipeline: 1+1-layer transformer, CLIP and T5 encoders, ×8 VAE."""
    import tempfile
    from pathlib import Path

    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextModel, T5Config, T5EncoderModel, T5TokenizerFast

    from .basemodel import _clip_config, build_clip_tokenizer

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        clip_tok = build_clip_tokenizer(Path(tmp))
    t5_tok = T5TokenizerFast(vocab=t5_vocab(), extra_ids=0, model_max_length=MAX_SEQUENCE_LENGTH)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=AutoencoderKL(
            in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 32, 32),
            layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=64,
            use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0,
        ),
        text_encoder=CLIPTextModel(_clip_config(clip_tok)),
        tokenizer=clip_tok,
        text_encoder_2=T5EncoderModel(T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=8,
                                               d_ff=64, num_layers=2, num_heads=4)),
        tokenizer_2=t5_tok,
        transformer=FluxTransformer2DModel(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
            pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        ),
    )

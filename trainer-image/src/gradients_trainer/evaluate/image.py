"""Image evaluation: noise-reconstruction MSE (img2img with and without the caption)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import flux
from ..data import ImageCaption
from ..image import choose_resolution, encode_images, encode_prompts, image_tensor, unet_eps


@dataclass(frozen=True)
class ImageProfile:
    strengths: tuple[float, ...]
    seeds: int
    steps: int
    guidance: float


# The paper's protocol: strengths 0.1…0.9, 10 seeds per strength (SDXL: 20 steps, cfg 8).
PAPER = ImageProfile(strengths=tuple(round(0.1 * i, 1) for i in range(1, 10)), seeds=10,
                     steps=20, guidance=8.0)
FAST = ImageProfile(strengths=(0.5, 0.8), seeds=2, steps=8, guidance=1.0)


def reconstruction_losses(pipe: Any, items: list[ImageCaption], profile: ImageProfile,
                          seed: int, resolution: int = 1024) -> tuple[float, float]:
    """Returns (text_guided_loss, no_text_loss): mean MSE in RGB [0, 1]."""
    import torch
    from diffusers import DDIMScheduler

    res = choose_resolution(items, resolution)
    pixels = torch.stack([image_tensor(i.image, res) for i in items]).to(pipe.device)
    latents0 = encode_images(pipe, pixels)
    if flux.is_flux(pipe):
        return _flux_losses(pipe, items, profile, seed, pixels, latents0)
    cond = encode_prompts(pipe, [i.caption for i in items], res)
    empty = encode_prompts(pipe, [""] * len(items), res)
    sched = DDIMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(profile.steps)
    sf = pipe.vae.config.scaling_factor
    results: dict[str, list[float]] = {"text": [], "none": []}
    for strength in profile.strengths:
        init = min(int(profile.steps * strength), profile.steps)
        timesteps = sched.timesteps[profile.steps - init :]
        if len(timesteps) == 0:
            continue
        for s in range(profile.seeds):
            gen = torch.Generator().manual_seed(seed + s)
            noise = torch.randn(latents0.shape, generator=gen).to(latents0)
            for mode, emb in (("text", cond), ("none", empty)):
                lat = sched.add_noise(latents0, noise, timesteps[:1].repeat(len(items)))
                with torch.no_grad():
                    for t in timesteps:
                        if profile.guidance > 1.0 and mode == "text":
                            both = unet_eps(pipe.unet, torch.cat([lat, lat]), t, empty.cat(emb))
                            uncond, text = both.chunk(2)
                            eps = uncond + profile.guidance * (text - uncond)
                        else:
                            eps = unet_eps(pipe.unet, lat, t, emb)
                        lat = sched.step(eps, t, lat).prev_sample
                    shift = getattr(pipe.vae.config, "shift_factor", None) or 0.0
                    img = pipe.vae.decode(lat / sf + shift).sample
                img01 = ((img.float() + 1) / 2).clamp(0, 1)
                results[mode].append(float(((img01 - pixels.float()) ** 2).mean()))
    if not results["text"]:
        raise ValueError("no denoising strengths produced any step")
    return (sum(results["text"]) / len(results["text"]),
            sum(results["none"]) / len(results["none"]))


def _flux_losses(pipe: Any, items: list[ImageCaption], profile: ImageProfile, seed: int,
                 pixels: Any, latents0: Any) -> tuple[float, float]:
    """Flow-matching reconstruction: Euler from σ = strength to 0 (no CFG for Flux)."""
    import torch

    conds = {"text": flux.encode(pipe, [i.caption for i in items]),
             "none": flux.encode(pipe, [""] * len(items))}
    results: dict[str, list[float]] = {"text": [], "none": []}
    for strength in profile.strengths:
        for s in range(profile.seeds):
            gen = torch.Generator().manual_seed(seed + s)
            noise = torch.randn(latents0.shape, generator=gen).to(latents0)
            for mode, cond in conds.items():
                lat = flux.reconstruct(pipe, latents0, cond, strength, profile.steps, noise)
                with torch.no_grad():
                    img = pipe.vae.decode(flux.from_latents(pipe, lat)).sample
                img01 = ((img.float() + 1) / 2).clamp(0, 1)
                results[mode].append(float(((img01 - pixels.float()) ** 2).mean()))
    return (sum(results["text"]) / len(results["text"]),
            sum(results["none"]) / len(results["none"]))

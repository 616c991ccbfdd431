"""Image evaluation: noise-reconstruction MSE (img2img with and without the caption).

Profiles are named per pipeline family (see ``PROFILES`` and the README). Images go through
the model in batches that halve on out-of-memory; an out-of-memory at one image is the
evaluator's problem (``EvaluatorOutOfMemory``), never the submission's. Each image's noise
depends only on the seed and its position, so the losses do not depend on the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .. import flux
from ..data import ImageCaption
from ..image import choose_resolution, encode_images, encode_prompts, image_tensor, unet_eps


@dataclass(frozen=True)
class ImageProfile:
    strengths: tuple[float, ...]
    seeds: int
    steps: int
    guidance: float  # SD/SDXL: classifier-free guidance scale; Flux: distilled guidance


_PAPER_STRENGTHS = tuple(round(0.1 * i, 1) for i in range(1, 10))
# family -> profile name -> settings. "production" follows the public evaluator's one
# strength per model with 10 seeds; "paper" is the white paper's 9 strengths x 10 seeds;
# "fast" is for tests and demos on CPU.
PROFILES: dict[str, dict[str, ImageProfile]] = {
    "sdxl": {
        "production": ImageProfile(strengths=(0.9,), seeds=10, steps=20, guidance=8.0),
        "paper": ImageProfile(strengths=_PAPER_STRENGTHS, seeds=10, steps=20, guidance=8.0),
        "fast": ImageProfile(strengths=(0.5, 0.8), seeds=2, steps=8, guidance=1.0),
    },
    "sd": {
        "production": ImageProfile(strengths=(0.9,), seeds=10, steps=20, guidance=8.0),
        "paper": ImageProfile(strengths=_PAPER_STRENGTHS, seeds=10, steps=20, guidance=8.0),
        "fast": ImageProfile(strengths=(0.5, 0.8), seeds=2, steps=8, guidance=1.0),
    },
    "flux": {
        "production": ImageProfile(strengths=(0.75,), seeds=10, steps=35, guidance=3.5),
        "paper": ImageProfile(strengths=_PAPER_STRENGTHS, seeds=10, steps=35, guidance=3.5),
        "fast": ImageProfile(strengths=(0.5, 0.8), seeds=2, steps=8, guidance=3.5),
    },
}
START_BATCH = 8


class EvaluatorOutOfMemory(Exception):
    """Out of memory with a single image: the evaluation's resources, not the submission."""


def family(pipe: Any) -> str:
    if flux.is_flux(pipe):
        return "flux"
    from ..image import is_xl

    return "sdxl" if is_xl(pipe) else "sd"


def profile_for(pipe: Any, name: str) -> ImageProfile:
    return PROFILES[family(pipe)][name]


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class Batches:
    """Runs a per-image function over chunks, halving the chunk size on out-of-memory."""

    def __init__(self, size: int = START_BATCH) -> None:
        self.size = max(1, size)
        self.backoffs = 0

    def run(self, n: int, fn: Callable[[slice], Any]) -> list[Any]:
        import torch

        out: list[Any] = []
        start = 0
        while start < n:
            chunk = slice(start, min(n, start + self.size))
            try:
                out.append(fn(chunk))
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                if not _is_oom(exc):
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if self.size == 1:
                    raise EvaluatorOutOfMemory(f"out of memory with one image: {exc}") from None
                self.size = max(1, self.size // 2)
                self.backoffs += 1
                continue
            start = chunk.stop
        return out


def _mse_per_image(img: Any, pixels: Any) -> list[float]:
    img01 = ((img.float() + 1) / 2).clamp(0, 1)
    return [float(v) for v in ((img01 - pixels.float()) ** 2).flatten(1).mean(1)]


def reconstruction_losses(pipe: Any, items: list[ImageCaption], profile: ImageProfile,
                          seed: int, resolution: int = 1024,
                          batches: Batches | None = None) -> tuple[float, float]:
    """Returns (text_guided_loss, no_text_loss): mean MSE in RGB [0, 1] over images,
    strengths and seeds."""
    import torch

    batches = batches or Batches()
    res = choose_resolution(items, resolution)
    pixels = torch.stack([image_tensor(i.image, res) for i in items]).to(pipe.device)
    latents0 = torch.cat(batches.run(len(items), lambda c: encode_images(pipe, pixels[c])))
    if flux.is_flux(pipe):
        conds: dict[str, Any] = {"text": flux.encode(pipe, [i.caption for i in items]),
                                 "none": flux.encode(pipe, [""] * len(items))}
        step = _flux_step(pipe, profile)
    else:
        conds = {"text": encode_prompts(pipe, [i.caption for i in items], res),
                 "none": encode_prompts(pipe, [""] * len(items), res)}
        step = _unet_step(pipe, profile, conds["none"])
    results: dict[str, list[float]] = {"text": [], "none": []}
    for strength in profile.strengths:
        for s in range(profile.seeds):
            gen = torch.Generator().manual_seed(seed + s)
            noise = torch.randn(latents0.shape, generator=gen).to(latents0)
            for mode, cond in conds.items():
                def one(c: slice) -> list[float]:
                    with torch.no_grad():
                        img = step(latents0[c], noise[c], cond.select(torch.arange(len(items))[c]),
                                   strength, mode == "text")
                    return _mse_per_image(img, pixels[c])

                for chunk in batches.run(len(items), one):
                    results[mode].extend(chunk)
    if not results["text"]:
        raise ValueError("no denoising strengths produced any step")
    return (sum(results["text"]) / len(results["text"]),
            sum(results["none"]) / len(results["none"]))


def _unet_step(pipe: Any, profile: ImageProfile, empty: Any) -> Callable[..., Any]:
    """DDIM img2img from ``strength``; classifier-free guidance with the caption only."""
    import torch
    from diffusers import DDIMScheduler

    sched = DDIMScheduler.from_config(pipe.scheduler.config)
    sched.set_timesteps(profile.steps)
    sf = pipe.vae.config.scaling_factor
    shift = getattr(pipe.vae.config, "shift_factor", None) or 0.0

    def run(lat0: Any, noise: Any, cond: Any, strength: float, guided: bool) -> Any:
        init = min(int(profile.steps * strength), profile.steps)
        timesteps = sched.timesteps[profile.steps - init:]
        n = lat0.shape[0]
        lat = sched.add_noise(lat0, noise, timesteps[:1].repeat(n)) if len(timesteps) else lat0
        uncond = empty.select(torch.arange(n))
        for t in timesteps:
            if guided and profile.guidance > 1.0:
                both = unet_eps(pipe.unet, torch.cat([lat, lat]), t, uncond.cat(cond))
                u, c = both.chunk(2)
                eps = u + profile.guidance * (c - u)
            else:
                eps = unet_eps(pipe.unet, lat, t, cond)
            lat = sched.step(eps, t, lat).prev_sample
        return pipe.vae.decode(lat / sf + shift).sample

    return run


def _flux_step(pipe: Any, profile: ImageProfile) -> Callable[..., Any]:
    """Flow-matching Euler from σ = strength to 0 with the profile's distilled guidance."""

    def run(lat0: Any, noise: Any, cond: Any, strength: float, guided: bool) -> Any:
        lat = flux.reconstruct(pipe, lat0, cond, strength, profile.steps, noise,
                               guidance=profile.guidance)
        return pipe.vae.decode(flux.from_latents(pipe, lat)).sample

    return run

"""Diffusion LoRA fine-tuning (UNet) of Stable-Diffusion-style pipelines with diffusers."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import flux
from .contract import MODEL_DIR, InputError, log
from .data import ImageCaption, load_image_folder
from .deadline import Budget, progress
from .runstate import RunState
from .modelio import device, replace_dir
from .strategies import Strategy

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
SUPPORTED_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline", "FluxPipeline")
ALL_ATTN = ["to_q", "to_k", "to_v", "to_out.0"]
EXTENDED = ALL_ATTN + ["proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2",
                       "time_emb_proj"]


def round64(value: int) -> int:
    return max(64, (int(value) // 64) * 64)


def pipeline_class(base: Path) -> str:
    import json

    index = base / "model_index.json"
    if not index.is_file():
        raise InputError("--base-model", f"{base}: no model_index.json (not a diffusers pipeline)")
    name = str(json.loads(index.read_text()).get("_class_name", ""))
    if name not in SUPPORTED_PIPELINES:
        raise InputError(
            "--base-model", f"pipeline class {name!r} not supported (supported: {SUPPORTED_PIPELINES})"
        )
    return name


def pipeline_type(name: str) -> Any:
    from diffusers import FluxPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    return {"StableDiffusionXLPipeline": StableDiffusionXLPipeline,
            "FluxPipeline": FluxPipeline}.get(name, StableDiffusionPipeline)


def is_xl(pipe: Any) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None


def load_pipeline(base: Path) -> Any:
    import torch

    cls = pipeline_type(pipeline_class(base))
    # float32 on GPU too: LoRA training and MSE evaluation are then free of fp16 VAE
    # overflow issues; SD-sized pipelines fit an H100 easily.
    kwargs: dict[str, Any] = dict(use_safetensors=True, local_files_only=True,
                                  torch_dtype=torch.float32)
    if cls.__name__ == "StableDiffusionPipeline":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    pipe = cls.from_pretrained(str(base), **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device())


def image_tensor(path: Path, resolution: int) -> Any:
    """Load RGB, resize the short side to ``resolution``, centre-crop; values in [0, 1]."""
    import numpy as np
    import torch
    from PIL import Image

    with Image.open(path) as im:
        img = im.convert("RGB")
    w, h = img.size
    scale = resolution / min(w, h)
    img = img.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))),
                     Image.Resampling.BICUBIC)
    w, h = img.size
    left, top = (w - resolution) // 2, (h - resolution) // 2
    img = img.crop((left, top, left + resolution, top + resolution))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


def choose_resolution(items: list[ImageCaption], wanted: int) -> int:
    from PIL import Image

    with Image.open(items[0].image) as im:
        native = min(im.size)
    return round64(min(wanted, max(64, native)))


@dataclass
class Cond:
    """UNet conditioning: token embeddings, plus SDXL's pooled text embeds and time ids."""

    emb: Any
    pooled: Any | None = None
    time_ids: Any | None = None

    def select(self, idx: Any) -> Cond:
        return Cond(self.emb[idx], None if self.pooled is None else self.pooled[idx],
                    None if self.time_ids is None else self.time_ids[idx])

    def cat(self, other: Cond) -> Cond:
        import torch

        def join(a: Any, b: Any) -> Any:
            return None if a is None else torch.cat([a, b])

        return Cond(join(self.emb, other.emb), join(self.pooled, other.pooled),
                    join(self.time_ids, other.time_ids))


def _tokens(tok: Any, captions: list[str], dev: Any) -> Any:
    return tok(captions, padding="max_length", max_length=tok.model_max_length,
               truncation=True, return_tensors="pt").input_ids.to(dev)


def encode_prompts(pipe: Any, captions: list[str], resolution: int) -> Cond:
    """SD: last hidden state of the CLIP text encoder. SDXL: penultimate hidden states of
    both encoders concatenated, the second encoder's projection as pooled embeds, and
    ``time_ids = (res, res, 0, 0, res, res)``."""
    import torch

    with torch.no_grad():
        if not is_xl(pipe):
            return Cond(pipe.text_encoder(_tokens(pipe.tokenizer, captions, pipe.device))[0])
        out1 = pipe.text_encoder(_tokens(pipe.tokenizer, captions, pipe.device),
                                 output_hidden_states=True)
        out2 = pipe.text_encoder_2(_tokens(pipe.tokenizer_2, captions, pipe.device),
                                   output_hidden_states=True)
        emb = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
        ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]],
                           dtype=emb.dtype, device=emb.device).repeat(len(captions), 1)
        return Cond(emb, out2.text_embeds, ids)


def unet_eps(unet: Any, latents: Any, t: Any, cond: Cond) -> Any:
    added = None
    if cond.pooled is not None:
        added = {"text_embeds": cond.pooled, "time_ids": cond.time_ids}
    return unet(latents, t, encoder_hidden_states=cond.emb, added_cond_kwargs=added).sample


def encode_images(pipe: Any, pixels01: Any, generator: Any | None = None) -> Any:
    import torch

    with torch.no_grad():
        dist = pipe.vae.encode((pixels01 * 2 - 1).to(pipe.device, pipe.vae.dtype)).latent_dist
        latents = dist.mean if generator is None else dist.sample(generator)
    shift = getattr(pipe.vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * pipe.vae.config.scaling_factor


def pretrain_pipeline(pipe: Any, folder: Path, steps: int, seed: int) -> dict[str, float]:
    """Base-model preparation: train the fresh VAE as an autoencoder, then the UNet (full)
    as a denoiser on the pretrain images, so that fine-tuning starts from something."""
    import torch

    vae, scheduler = pipe.vae, pipe.scheduler
    unet = pipe.transformer if flux.is_flux(pipe) else pipe.unet
    items = load_image_folder(folder, "--pretrain-data")
    res = choose_resolution(items, 1024)
    pixels01 = torch.stack([image_tensor(i.image, res) for i in items])
    vae_loss = warmup_vae(vae, pixels01 * 2 - 1, steps * 2, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        raw = vae.encode(pixels01 * 2 - 1).latent_dist.mean
        # Like SD's 0.18215: scale latents to unit variance so noise levels mean something.
        vae.register_to_config(scaling_factor=float(1.0 / raw.std().clamp(min=1e-4)))
        latents = raw * vae.config.scaling_factor
    captions = [i.caption for i in items]
    flux_cond = flux.encode(pipe, captions) if flux.is_flux(pipe) else None
    cond = None if flux_cond is not None else encode_prompts(pipe, captions, res)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    unet.train()
    T = int(getattr(scheduler.config, "num_train_timesteps", 1000))
    unet_loss = float("nan")
    for _ in range(steps * 2):
        idx = torch.randint(0, len(items), (min(8, len(items)),), generator=gen)
        if flux_cond is not None:
            loss = flux.training_loss(pipe, unet, latents[idx], flux_cond.select(idx), gen)
        else:
            assert cond is not None
            noise = torch.randn(latents[idx].shape, generator=gen)
            t = torch.randint(0, T, (len(idx),), generator=gen)
            pred = unet_eps(unet, scheduler.add_noise(latents[idx], noise, t), t, cond.select(idx))
            loss = torch.nn.functional.mse_loss(pred, noise)
        loss.backward()
        opt.step()
        opt.zero_grad()
        unet_loss = loss.item()
    unet.eval()
    return {"vae_pretrain_loss": vae_loss, "unet_pretrain_loss": unet_loss}


def warmup_vae(vae: Any, pixels: Any, steps: int, seed: int) -> float:
    """Briefly train a freshly initialised VAE as an autoencoder on pixels in [-1, 1]."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    vae.train()
    loss_value = float("nan")
    for _ in range(steps):
        idx = torch.randint(0, len(pixels), (min(4, len(pixels)),), generator=gen)
        x = pixels[idx]
        dist = vae.encode(x).latent_dist
        recon = vae.decode(dist.sample(gen)).sample
        kl = dist.kl().mean()
        loss = torch.nn.functional.mse_loss(recon, x) + 1e-6 * kl
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss_value = loss.item()
    vae.eval()
    return loss_value


@dataclass
class ImageTrainResult:
    run: RunState
    method: str


def save_unet_lora(pipe: Any, model_dir: Path) -> float:
    from peft.utils import get_peft_model_state_dict

    started = time.time()
    tmp = model_dir.parent / ".model.tmp-image"
    if tmp.exists():
        shutil.rmtree(tmp)
    # PEFT-format keys (unet.<module>.lora_A/lora_B.weight), which load_lora_weights reads.
    if flux.is_flux(pipe):
        type(pipe).save_lora_weights(
            save_directory=str(tmp), safe_serialization=True, weight_name=LORA_WEIGHT_NAME,
            transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
        )
    else:
        type(pipe).save_lora_weights(
            save_directory=str(tmp), safe_serialization=True, weight_name=LORA_WEIGHT_NAME,
            unet_lora_layers=get_peft_model_state_dict(pipe.unet),
        )
    replace_dir(tmp, model_dir)
    return time.time() - started


def train_image(
    base: Path, data: Path, strategy: Strategy, output: Path, seed: int, budget: Budget
) -> ImageTrainResult:
    import torch
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig

    items = load_image_folder(data, "--train-data")
    pipe = load_pipeline(base)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    res = choose_resolution(items, strategy.image_resolution)
    log(f"image training: {len(items)} images at {res}x{res}")
    pixels = torch.stack([image_tensor(i.image, res) for i in items])
    latents = encode_images(pipe, pixels).float()
    captions = [i.caption for i in items]
    is_flux = flux.is_flux(pipe)
    flux_cond = flux.encode(pipe, captions) if is_flux else None
    cond = None if is_flux else encode_prompts(pipe, captions, res)
    unet = pipe.transformer if is_flux else pipe.unet
    for module in (unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)):
        if module is not None:
            module.requires_grad_(False)
    extended = strategy.image_targets == "extended"
    if is_flux:
        targets = flux.LORA_TARGETS_EXTENDED if extended else flux.LORA_TARGETS
    else:
        targets = EXTENDED if extended else ALL_ATTN
    unet.add_adapter(LoraConfig(r=strategy.image_lora_r, lora_alpha=strategy.image_lora_r,
                                init_lora_weights="gaussian", target_modules=targets))
    trainable = [p for p in unet.parameters() if p.requires_grad]
    for p in trainable:
        p.data = p.data.float()
    opt = torch.optim.AdamW(trainable, lr=strategy.image_learning_rate,
                            weight_decay=strategy.image_weight_decay)
    total = max(1, strategy.image_steps)
    lr_sched = get_scheduler(strategy.image_scheduler, optimizer=opt,
                             num_warmup_steps=int(strategy.warmup_ratio * total)
                             if strategy.image_scheduler != "constant" else 0,
                             num_training_steps=total)
    noise_sched = pipe.scheduler
    T = int(getattr(noise_sched.config, "num_train_timesteps", 1000))
    prediction = str(noise_sched.config.get("prediction_type", "epsilon"))
    model_dir = output / MODEL_DIR
    run = RunState(planned_steps=total)
    unet.train()
    bs = min(strategy.image_batch_size, len(items))
    budget.step_started()
    for step in range(1, total + 1):
        step_loss = 0.0
        for _ in range(strategy.image_grad_accum):
            idx = torch.randint(0, len(items), (bs,), generator=gen)
            x0 = latents[idx].to(pipe.device)
            if flux_cond is not None:
                loss = flux.training_loss(pipe, unet, x0, flux_cond.select(idx.to(pipe.device)), gen)
            else:
                assert cond is not None
                noise = torch.randn(x0.shape, generator=gen).to(pipe.device)
                t = torch.randint(0, T, (bs,), generator=gen).to(pipe.device)
                noisy = noise_sched.add_noise(x0, noise, t)
                pred = unet_eps(unet, noisy, t, cond.select(idx.to(pipe.device))).float()
                target = (noise_sched.get_velocity(x0, noise, t) if prediction == "v_prediction"
                          else noise)
                loss = torch.nn.functional.mse_loss(pred, target)
            loss = loss / strategy.image_grad_accum
            loss.backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(trainable, strategy.max_grad_norm)
        opt.step()
        lr_sched.step()
        opt.zero_grad()
        budget.step_finished()
        run.steps = step
        run.tokens += bs * strategy.image_grad_accum
        run.losses.append(step_loss)
        run.last_loss = step_loss
        if step == 3:
            run.planned_steps = budget.replan(total, 3)
        progress(step, run.planned_steps, step_loss, budget)
        stop = budget.should_stop() or budget.plan_exhausted(step, run.planned_steps, total)
        if budget.should_save() and not stop:
            budget.note_save(save_unet_lora(pipe, model_dir))
        if stop:
            break
    unet.eval()
    save_unet_lora(pipe, model_dir)
    if math.isnan(run.losses[-1] if run.losses else 0.0):
        raise RuntimeError("image training diverged (NaN loss)")
    return ImageTrainResult(run=run, method="lora")

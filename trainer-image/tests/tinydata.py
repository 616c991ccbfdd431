"""Small deterministic datasets for the tests and bench.py (written at test time)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

WORDS = ["cat", "dog", "sun", "tree", "red", "blue", "fish", "bird", "moon", "star",
         "road", "lamp", "book", "milk", "rain", "wind"]

INSTRUCT_COLUMNS = {"instruction": "task", "input": "text", "output": "answer"}
DPO_COLUMNS = {"prompt": "question", "chosen": "good", "rejected": "bad"}
GRPO_COLUMNS = {"prompt": "prompt"}

REWARD_A = (
    "def count_a(completions, **kwargs):\n"
    "    return [c.count('a') / max(1, len(c)) for c in completions]\n"
)
REWARD_SHORT = (
    "def short(completions, **kwargs):\n"
    "    return [1.0 - min(len(c), 32) / 32 for c in completions]\n"
)
REWARD_LOOP = "def forever(completions, **kwargs):\n    while True:\n        pass\n"
REWARD_SOCKET = (
    "import socket\n"
    "def phone_home(completions, **kwargs):\n"
    "    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
    "    s.connect(('127.0.0.1', 9))\n"
    "    return [1.0 for _ in completions]\n"
)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def pretrain_corpus(path: Path, n: int = 64, seed: int = 0) -> Path:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))) + "."
        lines.append(line.upper() if i % 2 else line)
    path.write_text("\n".join(lines) + "\n")
    return path


def _phrase(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 3)))


def instruct_rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        text = _phrase(rng)
        rows.append({"task": "Upper:", "text": text, "answer": text.upper()})
    return rows


def dpo_rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        text = _phrase(rng)
        rows.append({"question": f"Upper: {text}", "good": text.upper(), "bad": text[::-1]})
    return rows


def grpo_rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"prompt": f"Say {_phrase(rng)}:"} for _ in range(n)]


def rewards_file(path: Path, entries: list[tuple[str, str, float]]) -> Path:
    path.write_text(json.dumps([{"name": n, "source": s, "weight": w} for n, s, w in entries]))
    return path


def image_folder(path: Path, n: int, seed: int, size: int = 64, style: str = "orange",
                 prefix: str = "img", caption: str | None = None) -> Path:
    """Soft diagonal gradients in an orange (fine-tune style) or blue palette, with captions."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    for i in range(n):
        a, b = rng.uniform(0.2, 0.8, 2)
        base = (xx * a + yy * (1 - a))[..., None]
        color = np.array([0.9, 0.4 + 0.2 * b, 0.1])
        if style != "orange":
            base = 0.5 + 0.5 * np.sin((xx * a + yy * b) * 12)[..., None]
            color = np.array([0.1, 0.3 + 0.3 * b, 0.9])
        img = np.clip(base * color + 0.05 * rng.standard_normal((size, size, 3)), 0, 1)
        Image.fromarray((img * 255).astype("uint8")).save(path / f"{prefix}{i:02d}.png")
        text = "an orange gradient in the gradients style" if style == "orange" else "blue waves"
        (path / f"{prefix}{i:02d}.txt").write_text(caption or text)
    return path


def image_pretrain_folder(path: Path, seed: int = 3) -> Path:
    """Base-model pretraining images: mostly blue waves, a few plain orange gradients."""
    image_folder(path, 12, seed, style="blue", prefix="blue", caption="an image")
    image_folder(path, 4, seed + 100, style="orange", prefix="orange", caption="an image")
    return path

#!/usr/bin/env python3
"""Writes the example datasets under examples/ (stdlib only; deterministic; committed output).

    python3 examples/make-examples.py

instruct: unit conversions ("Convert 7 kilometres to metres." -> "7000 metres"), a task a
          tiny model learns in a minute: the answer's unit word and the shape of the number.
dpo:      "Say it loudly: red fish" with "RED FISH" chosen over the reversed "hsif der".
grpo:     prompts asking for a short answer; the rewards (in task.yaml) favour short
          completions made of lower-case letters.
image:    32x32 PNG gradients in one warm palette with captions, the "style" to learn.
pretrain: plain English lines about numbers and units for the text base models' warm-up.
"""

import json
import random
import struct
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

UNITS = [
    ("kilometres", "metres", 1000),
    ("metres", "centimetres", 100),
    ("kilograms", "grams", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
    ("dozens", "items", 12),
    ("weeks", "days", 7),
]


def write_jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def instruct(rng: random.Random) -> list:
    rows = []
    for _ in range(320):
        src, dst, factor = rng.choice(UNITS)
        n = rng.randint(1, 30)
        rows.append({"question": f"Convert {n} {src} to {dst}.", "answer": f"{n * factor} {dst}"})
    return rows


def dpo(rng: random.Random) -> list:
    words = ["red", "blue", "green", "cat", "dog", "fish", "sun", "moon", "tree", "road", "lamp", "book"]
    rows = []
    for _ in range(200):
        phrase = " ".join(rng.choice(words) for _ in range(rng.randint(2, 3)))
        rows.append({"prompt": f"Say it loudly: {phrase}", "chosen": phrase.upper(), "rejected": phrase[::-1]})
    return rows


def grpo(rng: random.Random) -> list:
    things = ["colour", "fruit", "animal", "tree", "river", "city", "flower", "bird", "tool", "game"]
    return [{"prompt": f"Name a {rng.choice(things)} in one word:"} for _ in range(40)]


def png(path: Path, width: int, height: int, pixels) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(v for x in range(width) for v in pixels(x, y)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def images(rng: random.Random, folder: Path, n: int = 12, size: int = 32) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shapes = ["a diagonal", "a soft", "a warm", "a sunset"]
    for i in range(n):
        a = rng.uniform(0.2, 0.8)
        g = rng.uniform(0.3, 0.6)

        def pixel(x: int, y: int, a=a, g=g):
            t = (x * a + y * (1 - a)) / (size - 1)
            return (int(230 * (0.4 + 0.6 * t)), int(255 * g * t), int(40 * (1 - t)))

        png(folder / f"img{i:02d}.png", size, size, pixel)
        (folder / f"img{i:02d}.txt").write_text(f"{rng.choice(shapes)} orange gradient in the gradients style\n")


def pretrain(rng: random.Random) -> str:
    words = ["one", "two", "three", "ten", "twenty", "a hundred", "many", "few"]
    units = sorted({u for src, dst, _ in UNITS for u in (src, dst)})
    lines = []
    for _ in range(200):
        lines.append(f"There are {rng.choice(words)} {rng.choice(units)} in {rng.choice(words)} {rng.choice(units)}.")
        lines.append(f"{rng.randint(1, 99)} and {rng.randint(1, 99)} make a number.")
    return "\n".join(lines) + "\n"


def main() -> None:
    write_jsonl(HERE / "instruct" / "data.jsonl", instruct(random.Random(1)))
    write_jsonl(HERE / "dpo" / "data.jsonl", dpo(random.Random(2)))
    write_jsonl(HERE / "grpo" / "data.jsonl", grpo(random.Random(3)))
    images(random.Random(4), HERE / "image" / "images")
    (HERE / "pretrain.txt").write_text(pretrain(random.Random(5)))


if __name__ == "__main__":
    main()

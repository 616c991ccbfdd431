"""Tables (Markdown), the summary and the plot (SVG drawn by hand: no plotting dependency)."""

from __future__ import annotations

import math
from html import escape
from typing import Any, Sequence

from .stats import Comparison, relative_improvement

CONTENDERS = ("baseline", "search", "halving")
LABELS = {"tournament": "tournament winner", "baseline": "baseline, all of B",
          "search": "TPE + ASHA, all of B", "halving": "tournament with successive halving",
          "base": "untrained base (reference)", "autotrain": "baseline, AutoTrain's 3 epochs (reference)"}


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:+.1f} %"


def task_table(task: dict[str, Any], unit: str) -> str:
    """One task: a row per contender with its measured compute, losses and the tournament's
    relative improvement over it."""
    t = task["tournament"]
    names = (("first", "second") if task["task_type"] != "image" else ("text-guided", "no-text"))
    lines = [
        f"### {task['name']} ({task['task_type']}, {t['miners']} miners × {t['hours_per_miner'] * 3600:.0f} s, "
        f"B = {t['budget']:.1f} {unit}-s)",
        "",
        f"| contender | config | {unit}-s used | {names[0]} loss | {names[1]} loss | weighted | tournament better by |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key in ("tournament", *CONTENDERS):
        c = task.get(key)
        if c is None:
            continue
        better = "" if key == "tournament" else _pct(_improvement(t.get("weighted"), c.get("weighted")))
        config = str(c.get("config") or c.get("failure") or "-")
        if key in ("tournament", "halving") and c.get("winner"):
            config = f"{c['winner']}: {config}"
        if key == "halving" and c.get("share") is not None:
            config = f"{config}; {100 * c['share']:.0f} % of B"
        if key == "search" and c.get("trials_detail") is not None:
            trials = len({u["trial"] for u in c["trials_detail"]})
            config = f"{config}; {trials} trials, {len(c['trials_detail'])} trainings"
        lines.append(_row(LABELS[key], config, c, better))
        if key == "baseline" and c.get("autotrain"):
            a = c["autotrain"]
            lines.append(_row(LABELS["autotrain"], str(a.get("config") or a.get("failure") or "-"), a,
                              _pct(_improvement(t.get("weighted"), a.get("weighted")))))
    base = t.get("base")
    if base:
        lines.append(f"| {LABELS['base']} | - | - | {_num(base.get('first'))} | {_num(base.get('second'))} | "
                     f"{_num(base.get('weighted'))} | {_pct(_improvement(t.get('weighted'), base.get('weighted')))} |")
    return "\n".join(lines)


def _row(label: str, config: str, c: dict[str, Any], better: str) -> str:
    return (f"| {label} | {config} | {c.get('cost', 0):.1f} | {_num(c.get('first'))} | "
            f"{_num(c.get('second'))} | {_num(c.get('weighted'))} | {better} |")


def _improvement(tournament: float | None, other: float | None) -> float | None:
    if tournament is None or other is None:
        return None
    return relative_improvement(tournament, other)


def summary_table(comparisons: Sequence[Comparison]) -> str:
    lines = [
        "| tournament vs | tasks | win rate [95 % CI] | mean relative loss improvement [95 % CI] |",
        "| --- | ---: | --- | --- |",
    ]
    for c in comparisons:
        w, m = c.win_rate, c.mean_improvement
        lines.append(f"| {LABELS[c.contender]} | {c.n} | {_pct1(w.estimate)} [{_pct1(w.low)}, {_pct1(w.high)}] | "
                     f"{_pct(m.estimate)} [{_pct(m.low)}, {_pct(m.high)}] |")
    return "\n".join(lines)


def _pct1(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{100 * x:.0f} %"


def plot_svg(tasks: Sequence[dict[str, Any]], comparisons: Sequence[Comparison]) -> str:
    """Left: each task's weighted loss per contender. Right: the tournament's mean relative
    improvement over each contender with its bootstrap interval (right of zero: tournament better)."""
    colours = {"tournament": "#1f77b4", "baseline": "#ff7f0e", "search": "#2ca02c", "halving": "#9467bd"}
    width, height = 900, 60 + 40 * max(len(tasks), len(comparisons), 3)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           '<text x="10" y="20" font-size="14">weighted loss per task (shorter is better)</text>',
           '<text x="470" y="20" font-size="14">tournament\'s mean relative improvement, 95 % CI</text>']
    # Left panel: grouped bars, each task scaled to its largest magnitude.
    x0, bar_w = 130, 300
    for i, task in enumerate(tasks):
        y = 40 + 40 * i
        out.append(f'<text x="10" y="{y + 18}">{escape(task["name"][:18])}</text>')
        values = [(k, (task.get(k) or {}).get("weighted")) for k in ("tournament", *CONTENDERS)]
        finite = [abs(v) for _, v in values if v is not None and math.isfinite(v)]
        scale = max(finite) if finite else 1.0
        for j, (k, v) in enumerate(values):
            if v is None or not math.isfinite(v):
                continue
            w = bar_w * abs(v) / scale if scale else 0
            out.append(f'<rect x="{x0}" y="{y + 3 + 11 * j}" width="{w:.1f}" height="10" fill="{colours[k]}"/>')
            out.append(f'<text x="{x0 + w + 4:.1f}" y="{y + 12 + 11 * j}" font-size="10">{v:.3f}</text>')
    # Right panel: intervals on a shared axis.
    lo = min([c.mean_improvement.low for c in comparisons if math.isfinite(c.mean_improvement.low)] + [0.0])
    hi = max([c.mean_improvement.high for c in comparisons if math.isfinite(c.mean_improvement.high)] + [0.0])
    span = (hi - lo) or 1.0
    ax0, ax_w = 600, 270

    def px(v: float) -> float:
        return ax0 + ax_w * (v - lo) / span

    out.append(f'<line x1="{px(0):.1f}" y1="35" x2="{px(0):.1f}" y2="{height - 20}" stroke="#888" stroke-dasharray="3,3"/>')
    out.append(f'<text x="{px(lo):.1f}" y="{height - 5}" font-size="10">{100 * lo:+.0f} %</text>')
    out.append(f'<text x="{px(hi) - 30:.1f}" y="{height - 5}" font-size="10">{100 * hi:+.0f} %</text>')
    for i, c in enumerate(comparisons):
        y = 55 + 40 * i
        m = c.mean_improvement
        out.append(f'<text x="470" y="{y + 4}">vs {escape(c.contender)} (n={c.n})</text>')
        if not math.isfinite(m.estimate):
            continue
        out.append(f'<line x1="{px(m.low):.1f}" y1="{y}" x2="{px(m.high):.1f}" y2="{y}" '
                   f'stroke="{colours[c.contender]}" stroke-width="2"/>')
        out.append(f'<circle cx="{px(m.estimate):.1f}" cy="{y}" r="4" fill="{colours[c.contender]}"/>')
        out.append(f'<text x="{px(m.estimate) - 20:.1f}" y="{y - 8}" font-size="10">{100 * m.estimate:+.1f} %, '
                   f'wins {100 * c.win_rate.estimate:.0f} %</text>')
    legend_y = height - 20
    for j, k in enumerate(("tournament", *CONTENDERS)):
        out.append(f'<rect x="{10 + 150 * j}" y="{legend_y}" width="10" height="10" fill="{colours[k]}"/>')
        out.append(f'<text x="{24 + 150 * j}" y="{legend_y + 9}" font-size="10">{escape(k)}</text>')
    out.append("</svg>")
    return "\n".join(out)

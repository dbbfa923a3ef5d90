"""The training-curves PNG of a run folder, drawn with Pillow.

A run draws its curves once, at its end. Pillow is already loaded in a training process (transformers imports it),
so drawing costs a few milliseconds; matplotlib's import alone took about 0.3 s of every run (docs/speed.md). The
other figures of the project (reports, sweeps, previews) are drawn once per command and keep matplotlib.

Each series is one panel: its name, the values against the step, light grid lines at the y ticks, and the first and
round steps on the x axis. Drawn at twice the size and scaled down, so lines are smooth.
"""

from __future__ import annotations

import math
from pathlib import Path

SCALE = 2  # drawn at twice the size, then scaled down (antialiasing)
PANEL = (460, 370)  # one panel's width and height in the written image
TOP = 34  # the figure's title band
LINE = (31, 119, 180)  # the series colour
GRID = (222, 222, 222)
INK = (40, 40, 40)


def series_of(log_history: list[dict], metrics: tuple[str, ...]) -> dict[str, list[tuple[float, float]]]:
    """(step, value) points of each of ``metrics`` (and eval_loss when logged) that the history holds, finite only."""
    wanted = list(metrics)
    if any("eval_loss" in h for h in log_history):
        wanted.append("eval_loss")
    series = {k: [(float(h["step"]), float(h[k])) for h in log_history
                  if isinstance(h.get(k), (int, float)) and math.isfinite(h[k]) and "step" in h] for k in wanted}
    return {k: v for k, v in series.items() if v}


def plot_curves(log_history: list[dict], stage: str, metrics: tuple[str, ...], path: Path) -> list[str]:
    """Write a PNG of the training curves of ``metrics`` (and eval_loss when logged); returns the names drawn."""
    from PIL import Image, ImageDraw

    series = series_of(log_history, metrics)
    if not series:
        return []
    width, height = PANEL[0] * len(series) * SCALE, (PANEL[1] + TOP) * SCALE
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    title = f"{stage} training curves"
    big = _font(15)
    draw.text(((width - draw.textlength(title, font=big)) / 2, 8 * SCALE), title, fill=INK, font=big)
    for i, (name, points) in enumerate(series.items()):
        _panel(draw, name, points, left=i * PANEL[0] * SCALE, top=TOP * SCALE)
    image = image.reduce(SCALE)  # each pixel the mean of a SCALE x SCALE block
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=False)
    return list(series)


def _font(points: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=points * SCALE)  # Pillow's own FreeType font, when FreeType is built in
    except (TypeError, ImportError, OSError):  # an old Pillow or one without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _ticks(low: float, high: float) -> list[float]:
    """Round values, four to eight of them, within [low, high]."""
    if high <= low:
        return [low]
    raw = (high - low) / 6
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    first = math.ceil(low / step) * step
    return [first + k * step for k in range(int((high - first) / step + 1e-9) + 1)]


def _panel(draw, name: str, points: list[tuple[float, float]], left: int, top: int) -> None:
    s = SCALE
    small, label = _font(10), _font(12)
    box = (left + 70 * s, top + 28 * s, left + (PANEL[0] - 18) * s, top + (PANEL[1] - 46) * s)
    steps, values = [p[0] for p in points], [p[1] for p in points]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.06 or abs(hi) * 0.05 or 1.0
    lo, hi = lo - pad, hi + pad
    x0, x1 = min(steps), max(steps)
    span = (x1 - x0) or 1.0

    def at(step: float, value: float) -> tuple[float, float]:
        return (box[0] + (step - x0) / span * (box[2] - box[0]) if x1 > x0 else (box[0] + box[2]) / 2,
                box[3] - (value - lo) / (hi - lo) * (box[3] - box[1]))

    for tick in _ticks(lo, hi):
        y = at(x0, tick)[1]
        draw.line([(box[0], y), (box[2], y)], fill=GRID, width=s)
        text = f"{tick:.4g}"
        draw.text((box[0] - 6 * s - draw.textlength(text, font=small), y - 6 * s), text, fill=INK, font=small)
    draw.rectangle(box, outline=INK, width=s)
    for step in _ticks(x0, x1) if x1 > x0 else [x0]:
        text = f"{step:g}"
        x = at(step, lo)[0]
        draw.line([(x, box[3]), (x, box[3] + 4 * s)], fill=INK, width=s)
        draw.text((x - draw.textlength(text, font=small) / 2, box[3] + 6 * s), text, fill=INK, font=small)
    draw.text(((box[0] + box[2] - draw.textlength("step", font=label)) / 2, box[3] + 22 * s), "step", fill=INK,
              font=label)
    draw.text(((box[0] + box[2] - draw.textlength(name, font=label)) / 2, top + 6 * s), name, fill=INK, font=label)
    xy = [at(step, value) for step, value in points]
    if len(xy) > 1:
        draw.line(xy, fill=LINE, width=int(1.5 * s), joint="curve")
    r = 1.8 * s
    for x, y in xy:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=LINE)

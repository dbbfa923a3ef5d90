"""A sweep's summary: ``sweep.md``, ``sweep.png`` and ``sweep.json`` in the sweep folder, from what each point wrote
(its final train loss, its evaluation figures through the benchmark registry, its AI feedback's pairs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import benchmarks
from ..core import runfolder


# ---------------------------------------------------------------------------------------------- summary
def _point_metrics(header: dict, entry: dict) -> dict:
    """What a point produced: final train loss and eval figures of its own (not shared) stages."""
    out: dict[str, Any] = {}
    folder = Path(entry.get("folder") or "")
    if header["kind"] == "stage":
        stages = {"": folder}
    else:
        stages = {name: folder / name for name in header.get("branched") or []}
    for name, f in stages.items():
        prefix = f"{name} " if name else ""
        status = runfolder.read_status(f) or {}
        metrics = status.get("metrics") or {}
        tail = _tail_loss(f)
        if isinstance(metrics.get("eval_loss"), (int, float)):
            out.setdefault("headline", f"{prefix}eval_loss")
        elif tail is not None:
            out.setdefault("headline", f"{prefix}{TAIL_LABEL}")
        if tail is not None:
            out[f"{prefix}{TAIL_LABEL}"] = tail
        for k, v in sorted(metrics.items()):
            if k.startswith("eval_") and isinstance(v, (int, float)) and not k.endswith(("runtime", "per_second")):
                out[f"{prefix}{k}"] = v
        if (f / "scores.json").is_file():
            scores = json.loads((f / "scores.json").read_text())

            for bench, metric in benchmarks.metrics(headline_only=True):  # every headline figure the run has
                value = metric.value(scores.get(bench.name))
                if isinstance(value, (int, float)):
                    out[f"{prefix}{metric.label}"] = value
        if (f / "summary.json").is_file() and status.get("status") == "complete":
            pairs = (json.loads((f / "summary.json").read_text()).get("pairs") or {}).get("train_prefs")
            if pairs is not None:
                out[f"{prefix}pairs"] = pairs
    return out



TAIL_LABEL = "train loss (last 10%)"



def _tail_loss(folder: Path) -> float | None:
    """The mean of the last 10% (at least one) of the logged training losses: the last one alone was computed
    before the last update, and is one batch's."""
    try:
        history = json.loads((folder / "log_history.json").read_text())
    except (OSError, ValueError):
        return None
    losses = [h["loss"] for h in history if isinstance(h.get("loss"), (int, float))]
    if not losses:
        return None
    k = max(1, -(-len(losses) // 10))
    return sum(losses[-k:]) / k



def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None



def summarize(sweep_dir: Path, header: dict, grid: list[dict], results: dict) -> str:
    """Write sweep.json, sweep.md and sweep.png; returns the markdown."""
    labels = list(grid[0]["values"])
    rows = []
    for point in grid:
        entry = results.get(point["name"], {"values": point["values"], "status": "not run"})
        metrics = _point_metrics(header, entry) if entry.get("folder") else {}
        headline = metrics.pop("headline", None)
        rows.append({"name": point["name"], **entry, "metrics": metrics, "headline": headline})
    columns = []
    for r in rows:
        columns += [c for c in r["metrics"] if c not in columns]
    text = [f"# Sweep of {header['recipe']}", "",
            f"{len(grid)} points: " + "; ".join(f"`{s['key']}` over {', '.join(s['values'])}" for s in header["swept"])
            + (f". Fixed overrides: {' '.join(header['overrides'])}" if header["overrides"] else "") + "."]
    if header["kind"] == "pipeline":
        text += ["", f"Stages shared by every point (run once): {', '.join(header['shared']) or 'none'}. "
                     f"Stages run per point: {', '.join(header['branched'])}."]
    headlines = sorted({r["headline"] for r in rows if r.get("headline")})
    if headlines:
        text += ["", f"Headline figure: {' / '.join(f'`{h}`' for h in headlines)} - the final evaluation loss on the "
                     "test split where there is one (eval_loss), else the mean of the last 10% of the logged training "
                     "losses (the last logged loss alone was computed before the last update)."]
    text += ["", "| " + " | ".join(labels + ["status"] + columns + ["folder"]) + " |",
             "|" + " --- |" * (len(labels) + len(columns) + 2)]
    for r in rows:
        cells = [r["values"][lab] for lab in labels] + [r["status"]]
        cells += [("–" if c not in r["metrics"] else f"{r['metrics'][c]:.4g}") for c in columns]
        cells.append(f"`{r.get('folder', '–')}`")
        text.append("| " + " | ".join(str(c) for c in cells) + " |")
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        text += ["", "Failed points:", ""] + [f"- {r['name']}: {r.get('error', '?')}" for r in failed]
    md = "\n".join(text) + "\n"
    if columns and _plot(rows, labels, columns, sweep_dir / "sweep.png"):
        md += "\n![sweep](sweep.png)\n"
    runfolder.write_atomic(sweep_dir / "sweep.md", md)
    runfolder.write_atomic(sweep_dir / "sweep.json", json.dumps(
        {**header, "points": [{k: v for k, v in r.items()} for r in rows]}, indent=2, default=str) + "\n")
    return md



def _plot(rows: list[dict], labels: list[str], columns: list[str], path: Path) -> bool:
    """One panel per figure against the first swept value; one line per value of the other swept keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x_label, others = labels[0], labels[1:]
    xs_num = [_number(r["values"][x_label]) for r in rows]
    numeric = all(x is not None for x in xs_num)
    order = sorted({r["values"][x_label] for r in rows}, key=lambda v: _number(v) if numeric else v)
    shown = columns[:6]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
    for ax, col in zip(axes[0], shown):
        groups: dict[str, list[dict]] = {}
        for r in rows:
            key = ", ".join(f"{o}={r['values'][o]}" for o in others)
            groups.setdefault(key, []).append(r)
        for key, group in groups.items():
            pts = sorted(((_number(r["values"][x_label]) if numeric else order.index(r["values"][x_label]),
                           r["metrics"][col]) for r in group if col in r["metrics"]))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key or None)
        if numeric and min(xs_num) > 0 and max(xs_num) / min(xs_num) >= 20:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(order)))
            ax.set_xticklabels(order, rotation=20, fontsize=8)
        failed = [r for r in rows if r["status"] == "failed"]
        for r in failed:
            x = _number(r["values"][x_label]) if numeric else order.index(r["values"][x_label])
            ax.axvline(x, color="#c0392b", linestyle=":", linewidth=1)
        ax.set_xlabel(x_label)
        ax.set_title(col, fontsize=10)
        if others and len(groups) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True

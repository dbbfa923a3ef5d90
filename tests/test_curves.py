"""The training-curves PNG of a run folder (drawn with Pillow): one panel per logged series, the line where the
values are, nothing for a history that logged none of them."""

from __future__ import annotations

import math

from PIL import Image

from zephyr_recipes.core import curves


def _history(n: int = 12) -> list[dict]:
    rows = [{"loss": 3.0 - 0.1 * i, "rewards/margins": 0.02 * i, "step": 5 * i + 1} for i in range(n)]
    rows.append({"eval_loss": 2.5, "step": 60})
    rows.append({"train_loss": 2.4, "train_runtime": 9.0, "step": 60})  # the summary row has no curve
    return rows


def _line_pixels(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    """Pixels of the series colour (within a tolerance: the scaled-down line's core) inside ``box``."""
    raw = image.crop(box).convert("RGB").tobytes()
    pixels = (raw[i:i + 3] for i in range(0, len(raw), 3))
    return sum(1 for px in pixels if all(abs(a - b) <= 40 for a, b in zip(px, curves.LINE)))


def test_one_panel_per_series_and_eval_loss_when_logged(tmp_path):
    path = tmp_path / "training_curves.png"
    drawn = curves.plot_curves(_history(), "dpo", ("loss", "rewards/margins", "rewards/accuracies"), path)
    assert drawn == ["loss", "rewards/margins", "eval_loss"]  # accuracies were never logged
    assert path.read_bytes()[:4] == b"\x89PNG"
    image = Image.open(path)
    assert image.size == (curves.PANEL[0] * 3, curves.PANEL[1] + curves.TOP)
    for i in range(3):  # every panel has the series drawn in it
        assert _line_pixels(image, (i * curves.PANEL[0], curves.TOP, (i + 1) * curves.PANEL[0], image.size[1])) > 10


def test_a_falling_loss_is_drawn_falling(tmp_path):
    path = tmp_path / "c.png"
    curves.plot_curves(_history(), "sft", ("loss",), path)
    image = Image.open(path).convert("RGB")
    w, h = image.size
    # The loss falls from left to right: the series colour sits high on the left and low on the right.
    left = _line_pixels(image, (0, curves.TOP, w // 3, h // 2))
    right = _line_pixels(image, (2 * w // 3, curves.TOP, w, h // 2))
    assert left > 3 * max(right, 1)


def test_non_finite_values_are_left_out_and_nothing_logged_draws_nothing(tmp_path):
    rows = [{"loss": math.nan, "step": 1}, {"loss": 2.0, "step": 2}, {"loss": math.inf, "step": 3},
            {"loss": 1.5, "step": 4}]
    assert curves.series_of(rows, ("loss",)) == {"loss": [(2.0, 2.0), (4.0, 1.5)]}
    path = tmp_path / "none.png"
    assert curves.plot_curves([{"train_runtime": 1.0, "step": 1}], "sft", ("loss",), path) == []
    assert not path.exists()


def test_a_single_point_and_a_flat_series_still_draw(tmp_path):
    for rows in ([{"loss": 1.0, "step": 1}], [{"loss": 1.0, "step": s} for s in range(1, 6)]):
        path = tmp_path / "one.png"
        assert curves.plot_curves(rows, "sft", ("loss",), path) == ["loss"]
        assert _line_pixels(Image.open(path), (0, curves.TOP, curves.PANEL[0], curves.PANEL[1])) > 3
        path.unlink()

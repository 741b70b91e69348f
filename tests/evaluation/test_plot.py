"""evaluation.plot: readable log axes, full legends, PNGs written; grid.scatter_image's picture."""
import math

import numpy as np
import pytest
import torch

from evaluation.plot import Curve, log_ticks, quality_figure, save_figure, scatter_figure, tick_label

LONG = "pc:corrector=langevin,snr=0.16,n_steps=2,predictor=reverse_diffusion"


def _labelled_ticks(axis) -> list[tuple[float, str]]:
    """(position, text) of the major ticks that are inside the view and carry a label."""
    lo, hi = sorted(axis.get_view_interval())
    fmt = axis.get_major_formatter()
    return [(v, fmt(v)) for v in axis.get_majorticklocs() if lo <= v <= hi and fmt(v)]


def _curves():
    return {"ddim": Curve([10, 100, 1000], [0.3, 0.9, 2.5], [0.5, 0.05, 0.02]),
            LONG: Curve([10, 100, 1000], [0.4, 1.1, 2.4], [0.9, 0.1, 0.03]),
            "ode:solver=dopri5": Curve([137], [1.7], [0.021])}


@pytest.mark.parametrize("lo, hi", [(10, 1000), (9, 100), (0.3, 2.5), (5, 60), (1.1, 1.3), (2.0, 2.0), (0.0123, 0.0125),
                                    (275.9, 278.7), (1e-6, 1e12)])
def test_log_ticks_never_a_single_label_and_cover_the_range(lo, hi):
    major, minor, (a, b) = log_ticks(lo, hi)
    assert len(major) >= 2 and a <= lo and b >= hi
    assert all(a * (1 - 1e-9) <= v <= b * (1 + 1e-9) for v in major + minor)
    assert not set(major) & set(minor)
    if hi > lo:  # the data fill the axis (narrow ranges are not squashed into a flat line)
        assert math.log(hi / lo) / math.log(b / a) > 0.85
    if hi / lo < 1.5:  # nearly linear: three or more round labels, evenly spaced
        assert len(major) >= 3 and len({round(y - x, 12) for x, y in zip(major, major[1:])}) == 1
    mantissas = {round(v / 10 ** math.floor(math.log10(v) + 1e-9), 6) for v in major}
    if math.log10(hi / lo) >= 2:  # a wide range: labels only at decades
        assert mantissas == {1.0}
    expected = {(9, 100): ["10", "20", "50", "100"], (0.3, 2.5): ["0.5", "1", "2"]}  # 1, 2, 5 in between
    if (lo, hi) in expected:
        assert [tick_label(v) for v in major] == expected[lo, hi]


def test_tick_labels_are_plain_numbers_near_one():
    assert [tick_label(v) for v in (0.002, 0.5, 10, 1000, 20000)] == ["0.002", "0.5", "10", "1000", "20000"]
    assert tick_label(1e-6) == "$10^{-6}$" and tick_label(2e6) == "$2\\times10^{6}$"


def test_quality_figure_axes_legend_and_reference():
    fig = quality_figure(_curves(), metric="sliced W2", title="oracle", reference=0.015,
                         reference_label="noise floor")
    fig.canvas.draw()
    nfe_ax, time_ax = fig.axes[:2]
    assert nfe_ax.get_xscale() == time_ax.get_xscale() == nfe_ax.get_yscale() == "log"
    assert [t for _, t in _labelled_ticks(nfe_ax.xaxis)] == ["10", "100", "1000"]
    assert len(_labelled_ticks(time_ax.xaxis)) >= 3  # 0.3 .. 2.5 s: 0.5, 1, 2
    assert len(_labelled_ticks(nfe_ax.yaxis)) >= 2 and len(_labelled_ticks(time_ax.yaxis)) >= 2
    assert len(nfe_ax.xaxis.get_minorticklocs()) > 0
    assert "NFE" in nfe_ax.get_xlabel() and "(s" in time_ax.get_xlabel() and nfe_ax.get_ylabel() == "sliced W2"
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["ddim", LONG, "ode:solver=dopri5", "noise floor"]
    box, frame = legend.get_window_extent(), fig.bbox  # the legend is inside the figure, beside the axes
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
    assert all(box.x0 >= ax.get_window_extent().x1 for ax in (nfe_ax, time_ax))
    floor = [line for line in nfe_ax.get_lines() if line.get_label() == "noise floor"]
    assert floor and np.allclose(floor[0].get_ydata(), 0.015)
    assert nfe_ax.get_ylim()[0] < 0.015


def test_quality_figure_falls_back_to_linear_for_nonpositive_values_and_rejects_bad_curves():
    fig = quality_figure({"a": Curve([10, 20], [0.1, 0.2], [-1.0, 2.0])}, metric="NLL")
    assert fig.axes[0].get_yscale() == "linear" and fig.axes[0].get_xscale() == "log"
    with pytest.raises(ValueError, match="equally long"):
        Curve([1, 2], [0.1], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least one"):
        quality_figure({}, metric="FID")


def test_save_figure_writes_a_nontrivial_png(tmp_path):
    from PIL import Image

    path = save_figure(quality_figure(_curves(), metric="FID"), tmp_path / "sub" / "plot.png")
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("L"))
    assert im.format == "PNG" and im.width > 1200 and im.height > 400
    assert (pixels < 128).mean() > 0.01 and (pixels > 250).mean() > 0.5  # lines and text on white
    assert not list(tmp_path.glob("sub/.*.tmp"))


def test_scatter_figure_panels_window_and_outside_count():
    g = torch.Generator().manual_seed(0)
    x = 0.5 * torch.randn(300, 3, generator=g)  # |x| < 3 but for 1 in ~10^9
    x[0, 0], x[1, 1], x[2, 0] = 50.0, float("nan"), float("inf")  # diverged samples: counted, not plotted
    fig = scatter_figure(x, 0.5 * torch.randn(200, 2, generator=g), extent=3.0)
    left, right = fig.axes
    assert left.get_xlim() == right.get_xlim() == (-3.0, 3.0)
    assert left.get_title() == "samples (n = 300, 1 outside, 2 NaN/inf)"
    assert right.get_title() == "exact samples (n = 200)"
    assert len(left.collections[0].get_offsets()) == 297
    with pytest.raises(ValueError, match="2-D points"):
        scatter_figure(torch.randn(10))


def test_scatter_image_is_a_picture_for_save_image_grid(tmp_path):
    from evaluation.grid import save_image_grid, scatter_image

    g = torch.Generator().manual_seed(1)
    centre = torch.tensor([[2.0, -2.0]])
    points = centre + 0.1 * torch.randn(400, 2, generator=g)
    one = scatter_image(points, size=256)
    two = scatter_image(points, size=256, reference=torch.randn(100, 2, generator=g))
    assert one.shape == (1, 3, 256, 256) and two.shape == (1, 3, 256, 512) and one.dtype == torch.float32
    assert 0 <= float(one.min()) and float(one.max()) <= 1
    # the points sit in the lower-right quadrant of the axes: colour there, none in the upper left
    coloured = (one[0].max(0).values - one[0].min(0).values) > 0.2
    h, w = coloured.shape
    assert coloured[h // 2:, w // 2:].sum() > 50 and coloured[: h // 3, : w // 3].sum() == 0
    grid = save_image_grid(two, tmp_path / "grid.png")
    assert grid.shape[2] == 3 and (tmp_path / "grid.png").stat().st_size > 5000
    with pytest.raises(ValueError, match="size"):
        scatter_image(points, size=32)

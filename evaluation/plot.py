"""Plots with matplotlib (Agg canvas, no pyplot state): sample quality against NFE and wall time,
and scatter plots of 2-D samples (MATH.md §5 for NFE, §6 for the oracle's exact samples).

Every plot is built by a function that returns a `matplotlib.figure.Figure`, so callers and tests
can inspect the axes (ticks, legend) before `save_figure` writes the PNG. matplotlib is imported
inside the functions: importing this module costs nothing.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DPI = 150  # saved PNGs: sharp text on a laptop screen, ~100-200 kB for a two-panel figure
MARKERS = "osD^vP*Xph<>"
_DECADE_SUBS = ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9))  # labelled mantissas, coarse to fine


@dataclass(frozen=True)
class Curve:
    """One method's runs, in run order: NFE, wall-clock seconds and quality of each run (equal lengths)."""

    nfe: Sequence[float]
    seconds: Sequence[float]
    quality: Sequence[float]

    def __post_init__(self):
        if not len(self.nfe) == len(self.seconds) == len(self.quality) > 0:
            raise ValueError(f"a Curve needs equally long, non-empty nfe/seconds/quality, got lengths "
                             f"{len(self.nfe)}/{len(self.seconds)}/{len(self.quality)}")


def _grid(lo: float, hi: float, subs) -> list[float]:
    """The values m * 10^k (m in subs) inside [lo, hi], with a relative slack for rounding."""
    out = []
    for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in subs:
            v = m * 10.0 ** k
            if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                out.append(v)
    return out


def _linear_ticks(lo: float, hi: float) -> list[float]:
    """At least three evenly spaced round values (step 1, 2 or 5 times a power of ten) inside [lo, hi]."""
    top = math.floor(math.log10(hi - lo))
    for e in range(top, top - 3, -1):
        for m in (5, 2, 1):
            # k m 10^e, divided rather than multiplied by 10^-e so that 0.1-steps stay exact decimals
            unit = (lambda k: k * m * 10.0 ** e) if e >= 0 else (lambda k: k * m / 10.0 ** -e)
            ticks = [unit(k) for k in range(math.ceil(lo / unit(1)), math.floor(hi / unit(1)) + 1)]
            if len(ticks) >= 3:
                return ticks
    raise AssertionError("unreachable: a step of span/100 always leaves three ticks")


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[float], tuple[float, float]]:
    """(labelled major ticks, unlabelled minor ticks, axis limits) of a log axis showing [lo, hi] > 0.

    Labels sit at every decade when at least three decades are in view, else at 1, 2 and 5 times
    a decade, else at every integer mantissa; on a range too narrow for three of those (where a
    log axis is nearly linear) at three or more round, evenly spaced values. Never a single label.
    """
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise ValueError(f"a log axis needs 0 < lo <= hi < inf, got lo={lo!r}, hi={hi!r}")
    span = math.log10(hi / lo)
    pad = 10 ** (0.05 * span if span > 0 else 0.02)  # end markers clear of the frame
    lo, hi = lo / pad, hi * pad
    for subs, enough in zip(_DECADE_SUBS, (3, 2, 3)):
        major = _grid(lo, hi, subs)
        if len(major) >= enough:
            break
    else:
        return _linear_ticks(lo, hi), [], (lo, hi)
    if len(major) > 8 and subs == (1,):  # many decades: label every n-th so labels do not collide
        major = major[::math.ceil(len(major) / 8)]
    minor = [v for v in _grid(lo, hi, _DECADE_SUBS[-1]) if all(abs(v / m - 1) > 1e-9 for m in major)]
    return major, minor, (lo, hi)


def tick_label(v: float) -> str:
    """A tick value as plain digits (0.002, 50, 1000) or, far from 1, as m x 10^k in mathtext."""
    if 1e-3 <= abs(v) < 1e5:
        return f"{v:g}"
    k = math.floor(math.log10(abs(v)) + 1e-9)
    m = round(v / 10 ** k, 6)
    return f"$10^{{{k}}}$" if m == 1 else f"${m:g}\\times10^{{{k}}}$"


def _apply_log_ticks(axis, lo: float, hi: float) -> tuple[float, float]:
    """Put the ticks of `log_ticks(lo, hi)` on a matplotlib Axis already on a log scale; returns its limits."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    major, minor, limits = log_ticks(lo, hi)
    axis.set_major_locator(FixedLocator(major))
    axis.set_minor_locator(FixedLocator(minor))
    axis.set_major_formatter(FuncFormatter(lambda v, _: tick_label(v)))
    axis.set_minor_formatter(NullFormatter())
    return limits


def _new_figure(width: float, height: float, dpi: float = 100):
    """A Figure on its own Agg canvas (no pyplot: no global state, no GUI backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    fig.get_layout_engine().set(w_pad=0.06, h_pad=0.06)  # inches: titles clear of the edge
    FigureCanvasAgg(fig)
    return fig


def _set_axis(ax, which: str, values: list[float]) -> None:
    """Log axis (ticks from `log_ticks`) when every value is positive, else linear with a margin."""
    set_scale, set_lim, axis = ((ax.set_xscale, ax.set_xlim, ax.xaxis) if which == "x"
                                else (ax.set_yscale, ax.set_ylim, ax.yaxis))
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0:
        set_scale("log")  # resets locators, so the fixed ticks come after it
        set_lim(*_apply_log_ticks(axis, min(finite), max(finite)))
    else:
        set_scale("linear")


def quality_figure(curves: Mapping[str, Curve], *, metric: str, title: str = "",
                   reference: float | None = None, reference_label: str = "reference",
                   time_label: str = "wall time per run (s)"):
    """Two panels, quality (`metric`, the y label) against NFE and against wall time, one line per method (MATH §5).

    `curves` maps a method's full label to its runs; `reference` draws a dashed horizontal line
    (e.g. the exact-vs-exact noise floor of the oracle). The legend sits outside the axes, to
    the right, with every label in full. Returns the Figure (save it with `save_figure`).
    """
    if not curves:
        raise ValueError("quality_figure needs at least one curve")
    fig = _new_figure(11.5, 4.4)
    panels = (("nfe", "NFE (score-function evaluations)", "quality vs NFE"),
              ("seconds", time_label, "quality vs wall time"))
    axes = fig.subplots(1, 2, sharey=True)
    ys = [y for c in curves.values() for y in c.quality] + ([reference] if reference is not None else [])
    for ax, (key, xlabel, panel_title) in zip(axes, panels):
        for k, (name, curve) in enumerate(curves.items()):
            # Both panels join a method's runs in NFE order: the time panel is the same path, re-timed.
            _, xs, qs = zip(*sorted(zip(curve.nfe, getattr(curve, key), curve.quality)))
            ax.plot(xs, qs, marker=MARKERS[k % len(MARKERS)], color=f"C{k % 10}", lw=1.6, ms=5, label=name)
        if reference is not None:
            ax.axhline(reference, ls="--", lw=1.2, color="0.35", label=reference_label)
        _set_axis(ax, "x", [x for c in curves.values() for x in getattr(c, key)])
        ax.set(title=panel_title, xlabel=xlabel)
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
    _set_axis(axes[0], "y", ys)  # shared y: set once
    axes[0].set_ylabel(metric)
    axes[1].tick_params(labelleft=True)  # sharey hides the right panel's labels; keep them readable
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", title="method", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def _as_points(points) -> np.ndarray:
    """[N, >=2] tensor or array -> float64 numpy [N, 2] (first two coordinates)."""
    x = points.detach().cpu().double().numpy() if hasattr(points, "detach") else np.asarray(points, float)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"expected 2-D points [N, >=2], got shape {tuple(x.shape)}")
    return x[:, :2]


def scatter_figure(samples, exact=None, *, extent: float | None = 4.0, size: int = 384, title: str = ""):
    """Scatter of samples [N, >=2] (first two coordinates), beside exact samples [M, >=2] when given.

    Both panels share the square window [-extent, extent]^2 (fixed, so pictures from different
    training steps compare; `extent=None` fits the data); points outside it and non-finite ones
    are counted in the panel title. Each panel is `size` pixels high and wide at 100 dpi. Returns the Figure.
    """
    panels = [("samples", _as_points(samples))] + ([("exact samples", _as_points(exact))] if exact is not None else [])
    if extent is None:
        finite = np.concatenate([p[np.isfinite(p).all(1)] for _, p in panels])
        extent = float(np.abs(finite).max()) * 1.05 if len(finite) else 1.0
    fig = _new_figure(size / 100 * len(panels), size / 100)
    for k, (ax, (name, xy)) in enumerate(zip(np.atleast_1d(fig.subplots(1, len(panels))), panels)):
        finite = np.isfinite(xy).all(1)
        inside = finite & (np.abs(np.where(finite[:, None], xy, 0)) <= extent).all(1)
        n, bad = len(xy), len(xy) - int(finite.sum())
        # marker area (pt^2) shrinks with n, so dense clouds show structure and sparse ones stay visible
        ax.scatter(xy[inside, 0], xy[inside, 1], s=max(1.0, min(10.0, 4000 / max(n, 1))),
                   alpha=0.5 if n > 1000 else 0.8, color=f"C{k}", linewidths=0, rasterized=True)
        outside = n - bad - int(inside.sum())
        counts = (f", {outside} outside" if outside else "") + (f", {bad} NaN/inf" if bad else "")
        ax.set_title(f"{name} (n = {n}{counts})", fontsize="small")
        ax.set(xlim=(-extent, extent), ylim=(-extent, extent), xlabel="$x_1$", ylabel="$x_2$", aspect="equal")
        ax.tick_params(labelsize="x-small")
        ax.grid(True, alpha=0.25)
    if title:
        fig.suptitle(title, fontsize="small")
    return fig


def figure_to_array(fig) -> np.ndarray:
    """Render a Figure to a float32 RGB array [3, H, W] in [0, 1] (H, W = figure size in pixels)."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3].transpose(2, 0, 1), dtype=np.float32) / 255.0


def save_figure(fig, path: str | os.PathLike, *, dpi: float = DPI) -> Path:
    """Write a Figure as PNG (atomically: temporary file, then rename); the whole figure is kept."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    os.replace(tmp, path)
    return path

"""Line plots drawn with Pillow (no matplotlib dependency): quality against NFE or time."""
import math
from pathlib import Path

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _scale(values, log: bool):
    vals = [math.log10(v) if log else v for v in values if (v > 0 or not log) and math.isfinite(v)]
    lo, hi = min(vals), max(vals)
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:  # 1, 2, 5 times powers of ten
        return [k + math.log10(m) for k in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]
    step = 10 ** math.floor(math.log10((hi - lo) / 4 or 1))
    return [lo + k * step for k in range(int((hi - lo) / step) + 1)][:12]


def line_plot(series: dict, *, title: str, xlabel: str, ylabel: str, logx: bool = True, logy: bool = True,
              hline: float | None = None, size: tuple[int, int] = (560, 420)):
    """One panel: series {name: (xs, ys)}; an optional dashed horizontal line (e.g. a noise floor)."""
    from PIL import Image, ImageDraw

    W, H = size
    left, right, top, bottom = 70, 150, 30, 50
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    xs = [x for xv, _ in series.values() for x in xv]
    ys = [y for _, yv in series.values() for y in yv] + ([hline] if hline else [])
    (x0, x1), (y0, y1) = _scale(xs, logx), _scale(ys, logy)

    def px(x, y):
        fx = ((math.log10(x) if logx else x) - x0) / (x1 - x0)
        fy = ((math.log10(y) if logy else y) - y0) / (y1 - y0)
        return left + fx * (W - left - right), H - bottom - fy * (H - top - bottom)

    draw.rectangle([left, top, W - right, H - bottom], outline="black")
    for tick in _ticks(x0, x1, logx):
        X = left + (tick - x0) / (x1 - x0) * (W - left - right)
        if left <= X <= W - right:
            draw.text((X - 10, H - bottom + 5), f"{10 ** tick:g}" if logx else f"{tick:g}", fill="black")
    for tick in _ticks(y0, y1, logy):
        Y = H - bottom - (tick - y0) / (y1 - y0) * (H - top - bottom)
        if top <= Y <= H - bottom:
            draw.text((5, Y - 5), f"{10 ** tick:.3g}" if logy else f"{tick:.3g}", fill="black")
    if hline:
        _, Y = px(10 ** x0 if logx else x0, hline)
        for X in range(left, W - right, 8):
            draw.line([X, Y - 1, X + 4, Y - 1], fill=(90, 90, 90), width=2)
        draw.text((W - right + 8, Y - 6), "noise floor", fill=(90, 90, 90))
    for k, (name, (xv, yv)) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        points = [px(x, y) for x, y in zip(xv, yv) if (x > 0 or not logx) and (y > 0 or not logy)]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        for X, Y in points:
            draw.ellipse([X - 3, Y - 3, X + 3, Y + 3], fill=color)
        draw.text((W - right + 8, top + 14 * k), name[:22], fill=color)
    draw.text((left, 8), f"{title}  (y: {ylabel})", fill="black")
    draw.text(((W - right) // 2, H - 18), xlabel, fill="black")
    return img


def save_panels(panels: list, path: str | Path) -> Path:
    """Paste plot panels side by side and save as PNG."""
    from PIL import Image

    W, H = sum(p.width for p in panels), max(p.height for p in panels)
    out = Image.new("RGB", (W, H), "white")
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path

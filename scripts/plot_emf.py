"""Plot the metrics of an EMF file (``aurora_demo --emf PATH``) the way a
CloudWatch dashboard shows them: RetryEvents summed per period, stacked by
outcome, and RetryElapsed's p50, p99 and maximum per period. SVG, no
plotting library.

    python scripts/plot_emf.py demo.emf docs/images/emf-demo.svg [--period 10]
"""

from __future__ import annotations

import argparse
import collections
import json
import math
from html import escape
from pathlib import Path

COLORS = {"recovered": "#2ca02c", "exhausted": "#d62728", "raised": "#ff7f0e"}
#: Drawn in this order; max dashed on top, since p99 of a few values is the max.
LINES = {"p50": "#1f77b4", "p99": "#9467bd", "max": "#555555"}
WIDTHS = {"p50": 1.6, "p99": 4, "max": 1.4}
FONT = 'font-family="sans-serif"'
WIDTH, LEFT, RIGHT, PANEL, GAP, TOP = 760, 70, 110, 190, 70, 50


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile, as CloudWatch's pNN statistics."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def read(path: Path, period: int) -> tuple[dict[int, dict], str]:
    """{period index: {"events": {outcome: n}, "elapsed": [ms]}} and the
    namespace."""
    documents = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not documents:
        raise SystemExit(f"{path}: no EMF lines")
    start = min(d["_aws"]["Timestamp"] for d in documents)
    bins: dict[int, dict] = collections.defaultdict(
        lambda: {"events": collections.Counter(), "elapsed": []}
    )
    for d in documents:
        index = (d["_aws"]["Timestamp"] - start) // (period * 1000)
        bins[index]["events"][d["outcome"]] += d["RetryEvents"]
        if d["outcome"] == "recovered":
            bins[index]["elapsed"].append(d["RetryElapsed"])
    namespace = documents[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"]
    return dict(bins), namespace


def text(x: float, y: float, value: str, anchor: str = "start", extra: str = "") -> str:
    size = "" if "font-size" in extra else ' font-size="12"'
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {FONT}{size} {extra}>'
        f"{escape(value)}</text>"
    )


def scale(value: float) -> tuple[float, float]:
    """(axis maximum, tick step): a 1-2-5 step giving at most five ticks."""
    raw = max(value, 1e-9) / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return math.ceil(value / step) * step or step, step


def axes(
    body: list[str], top: float, y_scale: tuple[float, float], label: str, count: int, period: int
) -> None:
    plot_width = WIDTH - LEFT - RIGHT
    high, step = y_scale
    for i in range(round(high / step) + 1):
        value = step * i
        y = top + PANEL - PANEL * value / high
        body.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#e5e5e5"/>'
        )
        body.append(text(LEFT - 6, y + 4, f"{value:g}", "end"))
    body.append(
        text(
            16,
            top + PANEL / 2,
            label,
            "middle",
            f'transform="rotate(-90 16 {top + PANEL / 2:.1f})"',
        )
    )
    every = max(1, count // 12)
    for index in range(0, count + 1, every):
        x = LEFT + plot_width * index / count
        seconds = index * period
        body.append(text(x, top + PANEL + 16, f"{seconds // 60}:{seconds % 60:02d}", "middle"))


def svg(bins: dict[int, dict], namespace: str, period: int, title: str) -> str:
    count = max(bins) + 1
    plot_width = WIDTH - LEFT - RIGHT
    slot = plot_width / count
    height = TOP + 2 * PANEL + GAP + 50
    body = [
        text(WIDTH / 2, 22, title, "middle", 'font-size="15"'),
        text(WIDTH / 2, 38, f"namespace {namespace}, period {period} s", "middle", 'fill="#555"'),
    ]
    # Panel 1: RetryEvents, Sum, stacked by outcome.
    top = TOP + 10
    totals = [sum(bins.get(i, {"events": {}})["events"].values()) for i in range(count)]
    y_scale = scale(max(totals))
    high = y_scale[0]
    body.append(
        text(LEFT, top - 6, f"RetryEvents (Sum per {period} s)", extra='font-weight="bold"')
    )
    axes(body, top, y_scale, "events", count, period)
    for i in range(count):
        y = top + PANEL
        for outcome, color in COLORS.items():
            n = bins.get(i, {"events": {}})["events"].get(outcome, 0)
            if not n:
                continue
            h = PANEL * n / high
            y -= h
            body.append(
                f'<rect x="{LEFT + i * slot + 1:.1f}" y="{y:.1f}" width="{max(slot - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{color}"><title>{outcome}: {n}</title></rect>'
            )
    for j, (outcome, color) in enumerate(COLORS.items()):
        ly = top + 12 + j * 16
        body.append(
            f'<rect x="{WIDTH - RIGHT + 12}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
        )
        body.append(text(WIDTH - RIGHT + 26, ly, outcome))
    # Panel 2: RetryElapsed of recovered operations, p50 / p99 / max.
    top += PANEL + GAP
    series: dict[str, list[tuple[int, float]]] = {name: [] for name in LINES}
    for i in range(count):
        values = bins.get(i, {"elapsed": []})["elapsed"]
        if values:
            series["p50"].append((i, percentile(values, 50)))
            series["p99"].append((i, percentile(values, 99)))
            series["max"].append((i, max(values)))
    y_scale = scale(max((v for points in series.values() for _, v in points), default=1))
    high = y_scale[0]
    body.append(
        text(
            LEFT,
            top - 6,
            f"RetryElapsed, recovered (ms per {period} s)",
            extra='font-weight="bold"',
        )
    )
    axes(body, top, y_scale, "ms", count, period)
    for j, (name, color) in enumerate(LINES.items()):
        points = " ".join(
            f"{LEFT + (i + 0.5) * slot:.1f},{top + PANEL - PANEL * v / high:.1f}"
            for i, v in series[name]
        )
        dash = ' stroke-dasharray="5 3"' if name == "max" else ""
        body.append(
            f'<polyline points="{points}" fill="none" stroke="{color}" '
            f'stroke-width="{WIDTHS[name]}"{dash}/>'
        )
        ly = top + 12 + j * 16
        body.append(
            f'<line x1="{WIDTH - RIGHT + 12}" y1="{ly - 4}" x2="{WIDTH - RIGHT + 24}" '
            f'y2="{ly - 4}" stroke="{color}" stroke-width="2"{dash}/>'
        )
        body.append(text(WIDTH - RIGHT + 28, ly, name))
    body.append(
        text(WIDTH / 2, height - 12, "time since the first event (min:s)", "middle", 'fill="#555"')
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}">\n<rect width="{WIDTH}" height="{height}" fill="white"/>\n'
        + "\n".join(body)
        + "\n</svg>\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("emf", type=Path, help="an EMF file (one JSON document per line)")
    parser.add_argument("svg", type=Path, help="the SVG to write")
    parser.add_argument("--period", type=int, default=60, help="seconds per point (default 60)")
    parser.add_argument(
        "--title", default="Retry events from aurora_demo, as CloudWatch graphs them"
    )
    args = parser.parse_args(argv)
    if args.period < 1:
        parser.error("--period must be at least 1")
    bins, namespace = read(args.emf, args.period)
    args.svg.write_text(svg(bins, namespace, args.period, args.title))
    print(f"-> {args.svg}")


if __name__ == "__main__":
    main()

"""Draw the figures of docs/performance.md from benchmarks/results/*.json as
SVG (no plotting library needed).

    python -m benchmarks.plot   # writes docs/images/overhead.svg, recovery.svg, fleet.svg
"""

from __future__ import annotations

import json
import math
import sys
from html import escape

from benchmarks import common

IMAGES = common.ROOT / "docs" / "images"
COLORS = {"psycopg": "#1f77b4", "psycopg2": "#d62728"}
FONT = 'font-family="sans-serif"'


def _load(name: str) -> dict | None:
    path = common.RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _svg(width: int, height: int, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">\n'
        f'<rect width="{width}" height="{height}" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    if "font-size" not in extra:
        extra += ' font-size="12"'
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {FONT} {extra}>{escape(text)}</text>'
    )


def overhead_svg(overhead: dict, instructions: dict | None) -> str:
    """Ratio aurora/stock per workload and driver: the wall-clock median with
    its interquartile range, and the instruction-count ratio."""
    workloads = list(next(iter(overhead["results"].values()))["workloads"])
    drivers = list(overhead["results"])
    low, high = 0.9, 1.2
    left, right, top, row = 130, 40, 62, 34
    width = 720
    plot_width = width - left - right
    height = top + row * len(workloads) + 60

    def x(value: float) -> float:
        value = min(max(value, low), high)
        return left + (value - low) / (high - low) * plot_width

    body = [
        _text(width / 2, 20, "Per-query cost, aurora / stock backend", "middle", 'font-size="14"'),
        _text(
            width / 2,
            36,
            "bar: wall-clock median of batch ratios, line: IQR; diamond: instructions",
            "middle",
            'fill="#555"',
        ),
    ]
    for tick in (0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2):
        body.append(
            f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" '
            f'y2="{top + row * len(workloads)}" stroke="#ddd"/>'
        )
        body.append(_text(x(tick), top + row * len(workloads) + 16, f"{tick:.2f}", "middle"))
    body.append(
        f'<line x1="{x(1.02):.1f}" y1="{top - 4}" x2="{x(1.02):.1f}" '
        f'y2="{top + row * len(workloads)}" stroke="#2ca02c" stroke-dasharray="4 3"/>'
    )
    body.append(_text(x(1.02) + 3, top - 6, "target 1.02", extra='fill="#2ca02c"'))
    for i, name in enumerate(workloads):
        y0 = top + i * row
        body.append(_text(left - 8, y0 + row / 2 + 4, name, "end"))
        for j, driver in enumerate(drivers):
            y = y0 + 10 + j * 13
            ratio = overhead["results"][driver]["workloads"][name]["ratio"]
            color = COLORS.get(driver, "#333")
            body.append(
                f'<rect x="{x(1.0) if ratio["median"] >= 1 else x(ratio["median"]):.1f}" '
                f'y="{y - 4}" width="{abs(x(ratio["median"]) - x(1.0)):.1f}" height="8" '
                f'fill="{color}" opacity="0.55"/>'
            )
            body.append(
                f'<line x1="{x(ratio["q1"]):.1f}" y1="{y}" x2="{x(ratio["q3"]):.1f}" '
                f'y2="{y}" stroke="{color}" stroke-width="1.5"/>'
            )
            counted = (instructions or {}).get("instructions", {}).get(driver, {})
            counted = counted.get("workloads", {}).get(name)
            if counted:
                cx = x(counted["ratio"])
                body.append(
                    f'<polygon points="{cx:.1f},{y - 5} {cx + 5:.1f},{y} {cx:.1f},{y + 5} '
                    f'{cx - 5:.1f},{y}" fill="{color}" stroke="black" stroke-width="0.5"/>'
                )
    legend_y = height - 18
    for j, driver in enumerate(drivers):
        lx = left + j * 120
        body.append(
            f'<rect x="{lx}" y="{legend_y - 9}" width="12" height="10" '
            f'fill="{COLORS.get(driver, "#333")}" opacity="0.55"/>'
        )
        body.append(_text(lx + 16, legend_y, driver))
    return _svg(width, height, body)


def recovery_svg(recovery: dict) -> str:
    """Every recovery latency as a dot, per outage kind and driver, with the
    median marked and the 100 ms target."""
    rows = [
        (f"{outage} / {driver}", driver, result)
        for outage, by_driver in recovery["results"].items()
        for driver, result in by_driver.items()
        if "latencies_ms" in result
    ]
    high = max([300.0] + [max(r["latencies_ms"], default=0) for _, _, r in rows])
    left, right, top, row = 170, 40, 62, 40
    width = 720
    plot_width = width - left - right
    height = top + row * max(len(rows), 1) + 50

    def x(value: float) -> float:
        return left + min(value, high) / high * plot_width

    body = [
        _text(
            width / 2,
            20,
            "Recovery latency: database back to first answer (ms)",
            "middle",
            'font-size="14"',
        ),
        _text(width / 2, 36, "dots: trials; bar: median", "middle", 'fill="#555"'),
    ]
    step = 50 if high <= 400 else 100
    for tick in range(0, int(high) + 1, step):
        body.append(
            f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" '
            f'y2="{top + row * len(rows)}" stroke="#ddd"/>'
        )
        body.append(_text(x(tick), top + row * len(rows) + 16, str(tick), "middle"))
    body.append(
        f'<line x1="{x(100):.1f}" y1="{top - 4}" x2="{x(100):.1f}" '
        f'y2="{top + row * len(rows)}" stroke="#2ca02c" stroke-dasharray="4 3"/>'
    )
    body.append(_text(x(100) + 3, top - 6, "target: median 100 ms", extra='fill="#2ca02c"'))
    for i, (label, driver, result) in enumerate(rows):
        y = top + i * row + row / 2
        color = COLORS.get(driver, "#333")
        body.append(_text(left - 8, y + 4, label, "end"))
        for k, value in enumerate(result["latencies_ms"]):
            jitter = ((k * 7) % 11 - 5) * 1.2
            body.append(
                f'<circle cx="{x(value):.1f}" cy="{y + jitter:.1f}" r="3" fill="{color}" '
                f'opacity="0.6"/>'
            )
        median = result["latency_ms"].get("median")
        if median is not None:
            body.append(
                f'<line x1="{x(median):.1f}" y1="{y - 12}" x2="{x(median):.1f}" '
                f'y2="{y + 12}" stroke="black" stroke-width="2"/>'
            )
    return _svg(width, height, body)


KIND_COLORS = {"stock": "#7f7f7f", "naive": "#ff7f0e", "orca": "#1f77b4"}


def _binned(series: list[list[float]], width: float) -> list[tuple[float, float]]:
    """Mean rate per ``width``-second bin, at the bin's middle."""
    bins: dict[int, list[float]] = {}
    for t, rate in series:
        bins.setdefault(int(t // width), []).append(rate)
    return [((k + 0.5) * width, sum(v) / len(v)) for k, v in sorted(bins.items())]


def fleet_svg(fleet: dict) -> str:
    """Connection attempts per second at the proxy over time, one panel per
    fleet size and driver, one line per client kind; the pause shaded."""
    panels = [
        (f"{clients} clients, {driver}", by_kind)
        for clients, by_driver in fleet["results"].items()
        for driver, by_kind in by_driver.items()
    ]
    some = next(iter(panels[0][1].values()))
    start = some["timeline_s"]["paused"] - 2
    ends = [r["served_all_s"] or 20 for _, by_kind in panels for r in by_kind.values()]
    end = min(max(ends) + 3, 35)
    width, left, right, top, panel_height, gap = 720, 60, 20, 50, 150, 45
    plot_width = width - left - right
    height = top + len(panels) * (panel_height + gap) + 20

    def x(t: float) -> float:
        return left + (min(max(t, start), end) - start) / (end - start) * plot_width

    body = [
        _text(width / 2, 20, "Fleet through a pause: connection attempts per second at the proxy",
              "middle", 'font-size="14"'),
        _text(width / 2, 36, "mean per 0.5 s; shaded: paused; 0 s: resume(); "
              "dashed: every client served", "middle", 'fill="#555"'),
    ]  # fmt: skip
    for i, (title, by_kind) in enumerate(panels):
        y0 = top + i * (panel_height + gap) + 14
        rates = [_binned(r["series"], 0.5) for r in by_kind.values()]
        high = max([10.0] + [rate for series in rates for t, rate in series if start <= t <= end])
        magnitude = 10 ** math.floor(math.log10(high / 5))
        step = next(m * magnitude for m in (1, 2, 5, 10) if high / (m * magnitude) <= 5)

        def y(rate: float, y0: float = y0, high: float = high) -> float:
            return y0 + panel_height - min(rate, high) / high * panel_height

        paused = some["timeline_s"]["paused"]
        body.append(
            f'<rect x="{x(paused):.1f}" y="{y0}" width="{x(0) - x(paused):.1f}" '
            f'height="{panel_height}" fill="#eee"/>'
        )
        body.append(_text(left, y0 - 6, title, extra='font-weight="bold"'))
        tick = 0.0
        while tick <= high:
            body.append(
                f'<line x1="{left}" y1="{y(tick):.1f}" x2="{width - right}" y2="{y(tick):.1f}" '
                f'stroke="#ddd"/>'
            )
            body.append(_text(left - 6, y(tick) + 4, f"{tick:g}", "end"))
            tick += step
        every = 2 if end - start < 30 else 5
        for t in range(math.ceil(start / every) * every, int(end) + 1, every):
            body.append(_text(x(t), y0 + panel_height + 14, f"{t} s", "middle"))
        for (kind, result), series in zip(by_kind.items(), rates, strict=True):
            points = " ".join(f"{x(t):.1f},{y(r):.1f}" for t, r in series if start <= t <= end)
            color = KIND_COLORS.get(kind, "#333")
            body.append(
                f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
            served = result["served_all_s"]
            if served is not None and served <= end:
                body.append(
                    f'<line x1="{x(served):.1f}" y1="{y0}" x2="{x(served):.1f}" '
                    f'y2="{y0 + panel_height}" stroke="{color}" stroke-dasharray="3 3"/>'
                )
    legend_y = height - 10
    for j, kind in enumerate(KIND_COLORS):
        lx = left + j * 220
        body.append(
            f'<line x1="{lx}" y1="{legend_y - 4}" x2="{lx + 18}" y2="{legend_y - 4}" '
            f'stroke="{KIND_COLORS[kind]}" stroke-width="2"/>'
        )
        label = {"stock": "stock: no retry", "naive": "naive: retry every 0.1 s",
                 "orca": "orca-db (aurora backend)"}[kind]  # fmt: skip
        body.append(_text(lx + 24, legend_y, label))
    return _svg(width, height, body)


def main(argv: list[str] | None = None) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    overhead, instructions, recovery = _load("overhead"), _load("instructions"), _load("recovery")
    if overhead:
        (IMAGES / "overhead.svg").write_text(overhead_svg(overhead, instructions))
        print(f"-> {IMAGES / 'overhead.svg'}")
    if recovery:
        (IMAGES / "recovery.svg").write_text(recovery_svg(recovery))
        print(f"-> {IMAGES / 'recovery.svg'}")
    fleet = _load("fleet")
    if fleet:
        (IMAGES / "fleet.svg").write_text(fleet_svg(fleet))
        print(f"-> {IMAGES / 'fleet.svg'}")


if __name__ == "__main__":
    main(sys.argv[1:])

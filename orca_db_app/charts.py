"""The changelist's picture: events per hour and recovery time over the last
days, as geometry for a server-rendered SVG (no JavaScript, no CDN)."""

from __future__ import annotations

import dataclasses
import datetime
import math

from django.db.models import Count, Max, QuerySet
from django.db.models.functions import TruncHour
from django.utils import timezone

WIDTH = 720
HEIGHT = 120
#: Room for the y-axis labels (left) and the day labels (below).
LEFT = 44
BOTTOM = 16
TOP = 8


@dataclasses.dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclasses.dataclass
class Tick:
    position: float
    label: str


@dataclasses.dataclass
class Panel:
    """One chart: bars (some stacked) on a shared time axis."""

    title: str
    css: str
    unit: str
    bars: dict[str, list[Bar]]
    y_ticks: list[Tick]
    maximum: float


@dataclasses.dataclass
class Chart:
    days: int
    start: datetime.datetime
    end: datetime.datetime
    timezone: str
    width: int
    height: int
    plot_left: int
    plot_top: int
    plot_bottom: int
    x_ticks: list[Tick]
    events: Panel
    recovery: Panel
    total: int
    recovered: int
    failed: int
    slowest_ms: float | None

    @property
    def panels(self) -> list[Panel]:
        return [self.events, self.recovery]

    @property
    def slowest_seconds(self) -> float | None:
        return None if self.slowest_ms is None else self.slowest_ms / 1000

    @property
    def center_x(self) -> float:
        return (self.plot_left + self.width) / 2


def _nice_ceiling(value: float, steps: tuple[int, ...] = (1, 2, 5, 10)) -> float:
    """The smallest of ``steps`` times a power of ten not below ``value``
    (the axis' top; its middle tick is half of it)."""
    if value <= 0:
        return steps[0]
    power = 10 ** math.floor(math.log10(value))
    for step in steps:
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover


def _format(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:g} s"
    return f"{value:g}"


def _y_ticks(maximum: float, unit: str, top: float, bottom: float) -> list[Tick]:
    return [
        Tick(bottom - (bottom - top) * fraction, _format(maximum * fraction, unit))
        for fraction in (0, 0.5, 1)
    ]


def hourly_chart(queryset: QuerySet, *, days: int = 7) -> Chart:
    """Aggregate ``queryset`` (the changelist's, filters applied) per hour
    over the last ``days`` days. Two queries' worth of work, on the
    ``occurred_at`` index."""
    # Hours are counted in UTC (local time may skip or repeat an hour, or
    # be offset by half of one) and only labelled in local time.
    now = timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(hours=1)
    hours = days * 24
    start = end - datetime.timedelta(hours=hours)
    rows = (
        queryset.filter(occurred_at__gte=start, occurred_at__lt=end)
        .annotate(hour=TruncHour("occurred_at", tzinfo=datetime.UTC))
        .order_by()  # the model's ordering would end up in GROUP BY
        .values("hour", "outcome")
        .annotate(count=Count("pk"), slowest=Max("elapsed_ms"))
    )
    recovered: dict[int, int] = {}
    failed: dict[int, int] = {}
    slowest: dict[int, float] = {}
    for row in rows:
        index = int((row["hour"] - start).total_seconds() // 3600)
        if not 0 <= index < hours:
            continue
        if row["outcome"] == "recovered":
            recovered[index] = recovered.get(index, 0) + row["count"]
            slowest[index] = max(slowest.get(index, 0.0), row["slowest"] or 0.0)
        else:
            failed[index] = failed.get(index, 0) + row["count"]

    plot_top, plot_bottom = TOP, HEIGHT - BOTTOM
    plot_height = plot_bottom - plot_top
    step = (WIDTH - LEFT) / hours
    bar_width = max(step - 1, 1)

    def local(index: int) -> datetime.datetime:
        moment = start + datetime.timedelta(hours=index)
        return timezone.localtime(moment) if timezone.is_aware(moment) else moment

    def hour_label(index: int) -> str:
        return local(index).strftime("%Y-%m-%d %H:%M")

    most = max((recovered.get(i, 0) + failed.get(i, 0) for i in range(hours)), default=0)
    # Counts are whole: 2, 4, 10, 20, 40, 100... keep the middle tick whole.
    events_max = _nice_ceiling(max(most, 2), steps=(2, 4, 10))
    event_bars: dict[str, list[Bar]] = {"recovered": [], "failed": []}
    for index in range(hours):
        ok, bad = recovered.get(index, 0), failed.get(index, 0)
        if not ok and not bad:
            continue
        x = LEFT + index * step
        ok_height = plot_height * ok / events_max
        bad_height = plot_height * bad / events_max
        title = f"{hour_label(index)}: {ok} recovered, {bad} failed"
        if ok:
            y = plot_bottom - ok_height
            event_bars["recovered"].append(Bar(x, y, bar_width, ok_height, title))
        if bad:
            y = plot_bottom - ok_height - bad_height
            event_bars["failed"].append(Bar(x, y, bar_width, bad_height, title))

    slowest_seconds = max(slowest.values(), default=0.0) / 1000
    recovery_max = _nice_ceiling(slowest_seconds)
    recovery_bars: dict[str, list[Bar]] = {"slowest": []}
    for index, milliseconds in sorted(slowest.items()):
        height = max(plot_height * (milliseconds / 1000) / recovery_max, 1)
        recovery_bars["slowest"].append(
            Bar(
                LEFT + index * step,
                plot_bottom - height,
                bar_width,
                height,
                f"{hour_label(index)}: slowest recovery {milliseconds / 1000:.2f} s",
            )
        )

    x_ticks = []
    for index in range(1, hours):
        if local(index).date() != local(index - 1).date():
            x_ticks.append(Tick(LEFT + index * step, local(index).strftime("%b %d")))

    return Chart(
        days=days,
        start=start,
        end=end,
        timezone=timezone.get_current_timezone_name() if timezone.is_aware(now) else "",
        width=WIDTH,
        height=HEIGHT,
        plot_left=LEFT,
        plot_top=plot_top,
        plot_bottom=plot_bottom,
        x_ticks=x_ticks,
        events=Panel(
            "Events per hour",
            "events",
            "",
            event_bars,
            _y_ticks(events_max, "", plot_top, plot_bottom),
            events_max,
        ),
        recovery=Panel(
            "Slowest recovery per hour",
            "recovery",
            "s",
            recovery_bars,
            _y_ticks(recovery_max, "s", plot_top, plot_bottom),
            recovery_max,
        ),
        total=sum(recovered.values()) + sum(failed.values()),
        recovered=sum(recovered.values()),
        failed=sum(failed.values()),
        slowest_ms=max(slowest.values()) if slowest else None,
    )

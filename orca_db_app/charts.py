"""The changelist's picture: events and the slowest recovery per 5 seconds,
minute, hour, day or week, over a time range that follows the data (a burst
of less than 5 minutes: 5 minutes from its first minute; else the last hour,
day or week: the shortest that holds every event of the last week) or the
date the list is filtered to. Server-rendered: SVG bars stretched to the
page's width, axis labels and the legend in HTML, so text stays readable on a
phone (no JavaScript, no CDN).
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime
import math
from collections.abc import Mapping

from django.db.models import Count, Max, Min, QuerySet
from django.db.models.functions import TruncDay, TruncHour, TruncMinute, TruncSecond
from django.utils import timezone

SECONDS_5 = datetime.timedelta(seconds=5)
MINUTE = datetime.timedelta(minutes=1)
#: Events of the last week all within this: a burst (the demo's), shown on
#: a window of its own this long, 5 seconds a bar.
BURST = datetime.timedelta(minutes=5)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
WEEK = datetime.timedelta(days=7)

#: Height of a panel's drawing, in the SVG's units (its width is one unit
#: per bucket; CSS stretches both to the page).
SCALE = 100
#: Of each bucket's width, the part its bar fills.
BAR = 0.8


@dataclasses.dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclasses.dataclass
class Tick:
    #: Percent of the axis' length (x: from the left; y: from the bottom).
    percent: float
    label: str
    #: Hidden on narrow screens (every other x label).
    minor: bool = False

    @property
    def align(self) -> str:
        """Where the label sits on its tick: never past either end."""
        if self.percent < 8:
            return "start"
        if self.percent > 92:
            return "end"
        return "middle"


@dataclasses.dataclass
class Panel:
    """One chart: bars (some stacked) on the chart's time axis."""

    title: str
    css: str
    bars: dict[str, list[Bar]]
    y_ticks: list[Tick]
    maximum: float


@dataclasses.dataclass
class Span:
    """The time range shown and the size of one bar."""

    start: datetime.datetime
    end: datetime.datetime
    bucket: datetime.timedelta
    #: "5 minutes from 14:02", "Last hour", "Last 24 hours", "Last 7 days",
    #: or the filter's date.
    label: str
    #: "5 seconds", "minute", "hour", "day" or "week": what one bar counts.
    unit: str

    @property
    def buckets(self) -> int:
        # A year's last week is partial; a month's days may be an hour short
        # or long (daylight saving time).
        return max(1, math.ceil((self.end - self.start) / self.bucket - 0.05))


@dataclasses.dataclass
class Chart:
    span: Span
    timezone: str
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
    def buckets(self) -> int:
        return self.span.buckets

    @property
    def height(self) -> int:
        return SCALE

    @property
    def slowest_seconds(self) -> float | None:
        return None if self.slowest_ms is None else self.slowest_ms / 1000


# ----- the range --------------------------------------------------------------


def _local(moment: datetime.datetime) -> datetime.datetime:
    return timezone.localtime(moment) if timezone.is_aware(moment) else moment


def _floor(moment: datetime.datetime, step: datetime.timedelta) -> datetime.datetime:
    """``moment`` down to its 5 seconds, minute or hour (in UTC: a local hour
    may be skipped, repeated, or offset by half an hour)."""
    if step < MINUTE:
        return moment.replace(second=moment.second - moment.second % 5, microsecond=0)
    moment = moment.replace(second=0, microsecond=0)
    return moment.replace(minute=0) if step >= HOUR else moment


def recent_span(queryset: QuerySet, now: datetime.datetime) -> Span:
    """The last hour, 24 hours or 7 days: the shortest holding every event
    of the last 7 days in ``queryset`` (so events of a few minutes fill the
    chart rather than one thin bar at its edge); when those events all lie
    within :data:`BURST` (a 30 s demo), 5 minutes from their first minute,
    5 seconds a bar, however long ago the burst was."""
    found = queryset.filter(occurred_at__gte=now - WEEK, occurred_at__lte=now).aggregate(
        oldest=Min("occurred_at"), newest=Max("occurred_at")
    )
    oldest, newest = found["oldest"], found["newest"]
    if oldest is not None and newest - oldest < BURST - SECONDS_5:
        start = _floor(oldest, MINUTE)
        if newest >= start + BURST:  # late in its first minute: from its 5 seconds
            start = _floor(oldest, SECONDS_5)
        label = f"5 minutes from {_local(start).strftime('%b %d %H:%M')}"
        return Span(start, start + BURST, SECONDS_5, label, "5 seconds")
    choices = [
        (HOUR, MINUTE, "Last hour", "minute"),
        (DAY, HOUR, "Last 24 hours", "hour"),
        (WEEK, HOUR, "Last 7 days", "hour"),
    ]
    for length, bucket, label, unit in choices:
        end = _floor(now, bucket) + bucket
        start = end - length
        if oldest is not None and oldest >= start:
            return Span(start, end, bucket, label, unit)
    return Span(start, end, bucket, label, unit)


def filtered_span(params: Mapping[str, str], field: str) -> Span | None:
    """The date of the admin's date hierarchy (``field__year``, ``__month``,
    ``__day`` in ``params``) as a range in local time, or ``None``."""
    try:
        year = int(params[f"{field}__year"])
        month = int(params.get(f"{field}__month") or 0)
        day = int(params.get(f"{field}__day") or 0)
        first = datetime.date(year, month or 1, day or 1)
    except (KeyError, ValueError, OverflowError):
        return None
    if day:
        last, bucket, unit, label = first + DAY, HOUR, "hour", first.strftime("%b %d, %Y")
    elif month:
        days = calendar.monthrange(year, month)[1]
        last, bucket, unit = first + datetime.timedelta(days=days), DAY, "day"
        label = first.strftime("%B %Y")
    else:
        last, bucket, unit, label = datetime.date(year + 1, 1, 1), WEEK, "week", str(year)

    def midnight(date: datetime.date) -> datetime.datetime:
        moment = datetime.datetime.combine(date, datetime.time())
        return timezone.make_aware(moment) if timezone.is_aware(timezone.now()) else moment

    return Span(midnight(first), midnight(last), bucket, label, unit)


# ----- the axes -----------------------------------------------------------------


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


def _y_ticks(maximum: float, unit: str) -> list[Tick]:
    suffix = " s" if unit == "s" else ""
    return [Tick(fraction * 100, f"{maximum * fraction:g}{suffix}") for fraction in (0, 0.5, 1)]


def _x_ticks(span: Span) -> list[Tick]:
    """Labels at round local times, at most a dozen: every 10 minutes (an
    hour), 3 hours (a day; the date at midnight), day (a week or a month) or
    month (a year)."""
    start, end = _local(span.start), _local(span.end)
    length = end - start
    moments: list[tuple[datetime.datetime, str]] = []
    if length > 40 * DAY:
        moment = start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        while moment < end:
            if moment >= start:
                moments.append((moment, moment.strftime("%b")))
            moment = (moment + 32 * DAY).replace(day=1)
    elif length > 2 * DAY:
        every = max(1, math.ceil(length / DAY / 10))
        moment = start.replace(hour=0, minute=0, second=0, microsecond=0)
        while moment < end:
            if moment >= start:
                moments.append((moment, moment.strftime("%b %d")))
            moment = (moment + every * DAY + 2 * HOUR).replace(hour=0)  # DST-proof
    else:
        step = 1 if length <= 10 * MINUTE else 10 if length <= HOUR else 180  # minutes
        moment = start.replace(minute=0, second=0, microsecond=0)
        while moment < end:
            minutes = moment.hour * 60 + moment.minute
            if moment >= start and minutes % step == 0:
                label = moment.strftime("%b %d") if minutes == 0 else moment.strftime("%H:%M")
                moments.append((moment, label))
            moment += datetime.timedelta(minutes=min(step, 60))
    ticks = []
    for index, (moment, label) in enumerate(moments):
        percent = (moment - start) / length * 100
        ticks.append(Tick(percent, label, minor=index % 2 == 1))
    return ticks


# ----- the chart ------------------------------------------------------------------


def _truncate(span: Span):
    if span.bucket < MINUTE:
        return TruncSecond("occurred_at", tzinfo=datetime.UTC)
    if span.bucket < HOUR:
        return TruncMinute("occurred_at", tzinfo=datetime.UTC)
    if span.bucket < DAY:
        return TruncHour("occurred_at", tzinfo=datetime.UTC)
    return TruncDay("occurred_at")  # in local time, as the days of the filter


def _index(span: Span, moment: datetime.datetime) -> int:
    if span.bucket >= DAY:
        days = (_local(moment).date() - _local(span.start).date()).days
        return days // span.bucket.days
    return int((moment - span.start) // span.bucket)


def chart(
    queryset: QuerySet,
    params: Mapping[str, str] | None = None,
    *,
    field: str = "occurred_at",
    now: datetime.datetime | None = None,
) -> Chart:
    """Aggregate ``queryset`` (the changelist's, filters applied) per bucket
    of the range: the date hierarchy's in ``params``, else the recent one.
    Two queries, on the ``occurred_at`` index."""
    now = now or timezone.now()
    span = filtered_span(params or {}, field) or recent_span(queryset, now)
    buckets = span.buckets
    rows = (
        queryset.filter(occurred_at__gte=span.start, occurred_at__lt=span.end)
        .annotate(bucket=_truncate(span))
        .order_by()  # the model's ordering would end up in GROUP BY
        .values("bucket", "outcome")
        .annotate(count=Count("pk"), slowest=Max("elapsed_ms"))
    )
    recovered: dict[int, int] = {}
    failed: dict[int, int] = {}
    slowest: dict[int, float] = {}
    for row in rows:
        index = _index(span, row["bucket"])
        if not 0 <= index < buckets:
            continue
        if row["outcome"] == "recovered":
            recovered[index] = recovered.get(index, 0) + row["count"]
            slowest[index] = max(slowest.get(index, 0.0), row["slowest"] or 0.0)
        else:
            failed[index] = failed.get(index, 0) + row["count"]

    def when(index: int) -> str:
        moment = _local(span.start + span.bucket * index)
        if span.bucket < MINUTE:
            return moment.strftime("%Y-%m-%d %H:%M:%S")
        return moment.strftime("%Y-%m-%d" if span.bucket >= DAY else "%Y-%m-%d %H:%M")

    most = max((recovered.get(i, 0) + failed.get(i, 0) for i in range(buckets)), default=0)
    # Counts are whole: 2, 4, 10, 20, 40, 100... keep the middle tick whole.
    events_max = _nice_ceiling(max(most, 2), steps=(2, 4, 10))
    event_bars: dict[str, list[Bar]] = {"recovered": [], "failed": []}
    for index in range(buckets):
        ok, bad = recovered.get(index, 0), failed.get(index, 0)
        if not ok and not bad:
            continue
        ok_height = SCALE * ok / events_max
        bad_height = SCALE * bad / events_max
        title = f"{when(index)}: {ok} recovered, {bad} failed"
        if ok:
            event_bars["recovered"].append(Bar(index, SCALE - ok_height, BAR, ok_height, title))
        if bad:
            y = SCALE - ok_height - bad_height
            event_bars["failed"].append(Bar(index, y, BAR, bad_height, title))

    slowest_seconds = max(slowest.values(), default=0.0) / 1000
    recovery_max = _nice_ceiling(slowest_seconds)
    recovery_bars: dict[str, list[Bar]] = {"slowest": []}
    for index, milliseconds in sorted(slowest.items()):
        height = max(SCALE * (milliseconds / 1000) / recovery_max, 1)
        recovery_bars["slowest"].append(
            Bar(
                index,
                SCALE - height,
                BAR,
                height,
                f"{when(index)}: slowest recovery {milliseconds / 1000:.2f} s",
            )
        )

    return Chart(
        span=span,
        timezone=timezone.get_current_timezone_name() if timezone.is_aware(now) else "",
        x_ticks=_x_ticks(span),
        events=Panel(
            f"Events per {span.unit}",
            "events",
            event_bars,
            _y_ticks(events_max, ""),
            events_max,
        ),
        recovery=Panel(
            f"Slowest recovery per {span.unit}",
            "recovery",
            recovery_bars,
            _y_ticks(recovery_max, "s"),
            recovery_max,
        ),
        total=sum(recovered.values()) + sum(failed.values()),
        recovered=sum(recovered.values()),
        failed=sum(failed.values()),
        slowest_ms=max(slowest.values()) if slowest else None,
    )

"""The retry events admin: read-only, filtered, searched, charted, and only
for staff with the view permission (Django's test client)."""

from __future__ import annotations

import datetime
import re

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from orca_db_app.models import RetryEvent

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:orca_db_app_retryevent_changelist")


def make_user(django_user_model, username: str, *, staff: bool = True, view: bool = True):
    user = django_user_model.objects.create_user(username, password="pw-for-tests")
    user.is_staff = staff
    user.save()
    if view:
        user.user_permissions.add(
            Permission.objects.get(
                codename="view_retryevent", content_type__app_label="orca_db_app"
            )
        )
    return user


@pytest.fixture
def viewer(client, django_user_model):
    client.force_login(make_user(django_user_model, "viewer"))
    return client


@pytest.fixture
def sample_events():
    now = timezone.now()
    rows = [
        RetryEvent(
            occurred_at=now - datetime.timedelta(hours=2),
            database="default",
            phase="execute",
            error_type="AdminShutdown",
            sqlstate="57P01",
            message="terminating connection due to serverless scale event timeout",
            attempts=2,
            outcome="recovered",
            elapsed_ms=850.0,
            statement='SELECT "testapp_note"."text" FROM "testapp_note"',
            host="web-1",
            pid=11,
        ),
        RetryEvent(
            occurred_at=now - datetime.timedelta(hours=30),
            database="reports",
            phase="connect",
            error_type="OperationalError",
            message="connection refused",
            attempts=40,
            outcome="exhausted",
            elapsed_ms=60000.0,
            host="lambda",
            pid=7,
            lambda_request_id="req-abc",
        ),
        RetryEvent(
            occurred_at=now - datetime.timedelta(days=20),
            database="default",
            phase="transaction",
            error_type="AdminShutdown",
            attempts=1,
            outcome="raised",
            elapsed_ms=3.0,
            statement="COMMIT",
        ),
    ]
    return RetryEvent.objects.bulk_create(rows)


def chart_of(html: str) -> str:
    return html.split('<div id="retry-chart"')[1].rsplit("</figure>", 1)[0]


def listed(response) -> list[RetryEvent]:
    return list(response.context["cl"].result_list)


def test_changelist_shows_events_and_the_chart(viewer, sample_events):
    response = viewer.get(CHANGELIST)
    assert response.status_code == 200
    assert len(listed(response)) == 3
    html = response.content.decode()
    assert '<div id="retry-chart"' in html
    chart_html = chart_of(html)
    assert chart_html.count("<svg") == 2
    # The 20-day-old event is outside the chart's range, the last 7 days
    # (the shortest holding the events of the last week: 2 and 30 hours old).
    chart = response.context["retry_chart"]
    assert chart.span.label == "Last 7 days" and chart.buckets == 7 * 24
    assert (chart.total, chart.recovered, chart.failed) == (2, 1, 1)
    assert chart.slowest_ms == 850.0
    assert re.search(r'<rect class="recovered"[^>]*><title>[^<]*1 recovered, 0 failed', html)
    assert re.search(r'<rect class="failed"[^>]*><title>[^<]*0 recovered, 1 failed', html)
    assert re.search(r'<rect class="slowest"[^>]*><title>[^<]*slowest recovery 0.85 s', html)
    # Nothing fetched from elsewhere (the SVG namespace is a name, not a fetch).
    assert "http" not in chart_html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # Read-only: no add link, no actions (delete is the only default one).
    assert "addlink" not in html and 'name="action"' not in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("outcome__exact=recovered", {"execute"}),
        ("phase__exact=connect", {"connect"}),
        ("database=reports", {"connect"}),
        ("error_type=AdminShutdown", {"execute", "transaction"}),
        ("q=serverless", {"execute"}),
        ("q=COMMIT", {"transaction"}),
    ],
)
def test_filters_and_search(viewer, sample_events, query, expected):
    response = viewer.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    assert {event.phase for event in listed(response)} == expected


def test_filter_sidebar_offers_each_filter(viewer, sample_events):
    html = viewer.get(CHANGELIST).content.decode()
    for title in ("By database", "By phase", "By outcome", "By error type"):
        assert title in html
    assert "?database=reports" in html and "?error_type=OperationalError" in html


def test_date_hierarchy_and_chart_follow_the_filters(viewer, sample_events):
    old = sample_events[2].occurred_at
    response = viewer.get(
        f"{CHANGELIST}?occurred_at__year={old.year}&occurred_at__month={old.month}"
        f"&occurred_at__day={old.day}"
    )
    assert [event.phase for event in listed(response)] == ["transaction"]
    # The chart shows the day the list is filtered to, hour by hour.
    chart = response.context["retry_chart"]
    assert (chart.total, chart.failed, chart.buckets) == (1, 1, 24)
    assert chart.span.label == old.strftime("%b %d, %Y")
    assert chart.events.title == "Events per hour"
    response = viewer.get(f"{CHANGELIST}?database=reports")
    assert response.context["retry_chart"].total == 1
    response = viewer.get(f"{CHANGELIST}?q=nothing-matches-this")
    assert response.context["retry_chart"].total == 0
    assert "No events" in response.content.decode()


def test_detail_page_is_read_only(viewer, sample_events):
    event = sample_events[1]
    response = viewer.get(reverse("admin:orca_db_app_retryevent_change", args=[event.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "req-abc" in html and "connection refused" in html and "60.00 s" in html
    assert 'name="_save"' not in html
    inputs = re.findall(r"<(?:input|textarea|select)\b[^>]*>", html.split('id="content-main"')[1])
    assert all('type="hidden"' in tag for tag in inputs), inputs
    assert (
        viewer.post(
            reverse("admin:orca_db_app_retryevent_change", args=[event.pk]), {"attempts": 1}
        ).status_code
        == 403
    )
    assert viewer.get(reverse("admin:orca_db_app_retryevent_add")).status_code == 403
    delete = reverse("admin:orca_db_app_retryevent_delete", args=[event.pk])
    assert viewer.get(delete).status_code == 403
    assert RetryEvent.objects.filter(pk=event.pk, attempts=40).exists()


def test_detail_page_says_what_the_phase_and_an_attempt_are(viewer, sample_events):
    """Before: "Phase: Transaction", "Attempts: 1" next to "Recovered", with
    no word on what either counts."""
    event = RetryEvent.objects.create(
        occurred_at=timezone.now(), database="default", phase="transaction",
        error_type="AdminShutdown", attempts=1, outcome="recovered", elapsed_ms=12.0,
    )  # fmt: skip
    html = viewer.get(reverse("admin:orca_db_app_retryevent_change", args=[event.pk]))
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.content.decode()))
    assert "Transaction: a whole orca_db.retry_atomic block" in text
    assert "1 run of the block (or try of the call), the first included" in text
    assert "a COMMIT whose answer was lost was found committed" in text
    connect = sample_events[1]
    html = viewer.get(reverse("admin:orca_db_app_retryevent_change", args=[connect.pk]))
    assert "40 connection attempts, the first included" in html.content.decode()


def test_superuser_cannot_edit_either(admin_client, sample_events):
    assert admin_client.get(CHANGELIST).status_code == 200
    assert admin_client.get(reverse("admin:orca_db_app_retryevent_add")).status_code == 403


def test_non_staff_user_is_refused(client, django_user_model, sample_events):
    client.force_login(make_user(django_user_model, "outsider", staff=False))
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_without_view_permission_is_refused(client, django_user_model, sample_events):
    client.force_login(make_user(django_user_model, "staff", view=False))
    assert client.get(CHANGELIST).status_code == 403


def test_anonymous_is_sent_to_login(client):
    response = client.get(CHANGELIST)
    assert response.status_code == 302 and "login" in response["Location"]


def test_only_the_view_permission_exists():
    codenames = set(
        Permission.objects.filter(content_type__app_label="orca_db_app").values_list(
            "codename", flat=True
        )
    )
    assert "view_retryevent" in codenames
    assert not codenames & {"add_retryevent", "change_retryevent", "delete_retryevent"}


def make_events(*ages: datetime.timedelta) -> None:
    now = timezone.now()
    RetryEvent.objects.bulk_create(
        RetryEvent(
            occurred_at=now - age,
            database="default",
            phase="execute",
            error_type="AdminShutdown",
            attempts=2,
            outcome="recovered",
            elapsed_ms=120.0,
        )
        for age in ages
    )


def test_a_burst_of_events_fills_the_chart_of_the_last_hour(viewer):
    """After the demo every event sits in the same few minutes: the chart
    shows the last hour minute by minute (before: the last 7 days, one thin
    bar at the right edge)."""
    make_events(*(datetime.timedelta(seconds=s) for s in range(30, 600, 20)))
    response = viewer.get(CHANGELIST)
    chart = response.context["retry_chart"]
    assert chart.span.label == "Last hour"
    assert chart.buckets == 60
    assert chart.events.title == "Events per minute"
    assert chart.total == 29
    assert len(chart.events.bars["recovered"]) >= 9  # one bar per minute with events
    # A label every 10 minutes (the date instead at midnight).
    assert len(chart.x_ticks) == 6
    assert all(re.fullmatch(r"\d\d:\d0|\w{3} \d\d", tick.label) for tick in chart.x_ticks)


def test_a_30_second_demo_is_read_5_seconds_a_bar(viewer):
    """A 30 s demo looked at a few minutes later: its events fill a 5-minute
    window from their first minute, 5 seconds a bar (before: one or two bars
    at the far right of a one-hour axis)."""
    make_events(*(datetime.timedelta(seconds=s) for s in range(200, 170, -1)))
    chart = viewer.get(CHANGELIST).context["retry_chart"]
    assert chart.span.label.startswith("5 minutes from ")
    assert chart.span.end - chart.span.start == datetime.timedelta(minutes=5)
    assert chart.buckets == 60
    assert chart.events.title == "Events per 5 seconds"
    assert chart.total == 30
    bars = chart.events.bars["recovered"]
    assert len(bars) >= 6
    # In the first two thirds of the axis, readable, not squeezed at its edge.
    assert all(bar.x < 40 for bar in bars)
    # A label a minute.
    assert 5 <= len(chart.x_ticks) <= 6
    assert all(re.fullmatch(r"\d\d:\d\d|\w{3} \d\d", tick.label) for tick in chart.x_ticks)
    assert re.fullmatch(r".*: \d+ recovered, 0 failed", bars[0].title)
    assert re.search(r"\d\d:\d\d:\d\d:", bars[0].title)  # a bar says its second


def test_a_day_of_events_is_shown_hour_by_hour(viewer):
    make_events(datetime.timedelta(hours=5), datetime.timedelta(minutes=3))
    chart = viewer.get(CHANGELIST).context["retry_chart"]
    assert (chart.span.label, chart.buckets, chart.total) == ("Last 24 hours", 24, 2)


@pytest.mark.parametrize(
    "age",
    [datetime.timedelta(minutes=5), datetime.timedelta(hours=20), datetime.timedelta(days=6)],
)
def test_axis_labels_stay_inside_the_chart_and_a_legend_says_what_is_what(viewer, age):
    make_events(age)
    response = viewer.get(CHANGELIST)
    chart = response.context["retry_chart"]
    assert 2 <= len(chart.x_ticks) <= 12
    for tick in chart.x_ticks:
        assert 0 <= tick.percent <= 100
        # A label near an end is anchored on its inner side (before: "Nov 3"
        # for "Nov 30", cut at the right edge of the drawing).
        if tick.percent > 92:
            assert tick.align == "end"
        if tick.percent < 8:
            assert tick.align == "start"
    html = chart_of(response.content.decode())
    for series in ("recovered", "failed", "slowest"):
        assert f'<span class="swatch {series}"></span>' in html

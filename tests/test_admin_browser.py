"""The retry events admin in a real browser: headless Chromium (Debian's
package) driven by Playwright, against Django's live server. With
``ORCA_DB_SCREENSHOTS=docs/images`` it refreshes the screenshots used by
docs/events.md; otherwise they go to a temporary directory, so a test run
leaves the tree unchanged.

Skipped when Playwright (``pip install playwright``) or Chromium
(``apt-get install chromium``) is missing. Playwright's own browser download
is never used.
"""

from __future__ import annotations

import datetime
import os
import random
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from orca_db_app.models import RetryEvent
from tests.testapp.models import Note

sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")

CHROMIUM = os.environ.get("ORCA_DB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def images(tmp_path) -> Path:
    target = os.environ.get("ORCA_DB_SCREENSHOTS")
    return Path(target) if target else tmp_path


PASSWORD = "browser-test-pw"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}"),
]


def fill_week_of_events() -> None:
    """A plausible week: scale events most days, two pauses, a few failures."""
    rng = random.Random(4)
    now = timezone.now()
    rows = []
    for hour in range(7 * 24):
        if rng.random() > 0.22:
            continue
        for _ in range(rng.choice([1, 1, 2, 3, 5, 8])):
            at = now - datetime.timedelta(hours=hour, minutes=rng.randrange(60))
            kind = rng.random()
            if kind < 0.8:
                row = ("execute", "recovered", "AdminShutdown", "57P01", rng.uniform(40, 900))
            elif kind < 0.9:
                row = ("connect", "recovered", "CannotConnectNow", "57P03", rng.uniform(1e3, 9e3))
            elif kind < 0.96:
                row = ("execute", "raised", "AdminShutdown", "57P01", rng.uniform(1, 20))
            else:
                row = ("connect", "exhausted", "OperationalError", None, 60000.0)
            phase, outcome, error_type, sqlstate, elapsed = row
            rows.append(
                RetryEvent(
                    occurred_at=at,
                    database=rng.choice(["default", "default", "default", "reports"]),
                    phase=phase,
                    outcome=outcome,
                    error_type=error_type,
                    sqlstate=sqlstate,
                    message="terminating connection due to serverless scale event timeout"
                    if sqlstate == "57P01"
                    else "the database system is starting up",
                    attempts=1 if outcome == "raised" else rng.randint(2, 30),
                    elapsed_ms=elapsed,
                    statement=rng.choice(
                        [
                            'SELECT "shop_order"."id", "shop_order"."total" FROM "shop_order" '
                            'WHERE "shop_order"."customer_id" = %s',
                            'UPDATE "shop_cart" SET "updated" = %s WHERE "shop_cart"."id" = %s',
                            "",
                        ]
                    )
                    if phase == "execute"
                    else "",
                    host="ip-10-0-1-17",
                    pid=rng.randint(1000, 9000),
                )
            )
    for hours_ago, seconds in ((30, 31.4), (101, 18.2)):  # resumes from a pause
        rows.append(
            RetryEvent(
                occurred_at=now - datetime.timedelta(hours=hours_ago),
                database="default",
                phase="connect",
                outcome="recovered",
                error_type="OperationalError",
                message="connection to server failed: timeout expired",
                attempts=3,
                elapsed_ms=seconds * 1000,
                host="169.254.12.5",
                pid=8,
                lambda_request_id="0f7c2a8e-5b1d-4a8e-9d5e-2c1b7e9f4a11",
            )
        )
    RetryEvent.objects.bulk_create(rows)


def make_user(django_user_model, username: str, *, staff: bool):
    user = django_user_model.objects.create_user(username, password=PASSWORD, is_staff=staff)
    user.user_permissions.add(Permission.objects.get(codename="view_retryevent"))
    return user


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/orca_db_app/retryevent/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


# Where each visible x-axis label is, and the axis it belongs to (CSS px).
LABEL_BOXES = """() => [...document.querySelectorAll('#retry-chart .x-axis')].map(axis => {
  const box = axis.getBoundingClientRect();
  const labels = [...axis.querySelectorAll('span')]
    .filter(span => getComputedStyle(span).display !== 'none')
    .map(span => {
      const r = span.getBoundingClientRect();
      return {left: r.left, right: r.right, text: span.textContent,
              size: parseFloat(getComputedStyle(span).fontSize)};
    });
  return {left: box.left, right: box.right, labels};
})"""


def assert_labels_fit(page) -> None:
    """Every visible x-axis label inside its axis, none over another, none
    shrunk below 11 CSS px (before: the last label cut off at the drawing's
    edge, and on a phone every label scaled down with the drawing)."""
    axes = page.evaluate(LABEL_BOXES)
    assert len(axes) == 2  # one per panel
    for axis in axes:
        labels = sorted(axis["labels"], key=lambda label: label["left"])
        assert len(labels) >= 2, axis
        for label in labels:
            assert axis["left"] - 0.5 <= label["left"], label
            assert label["right"] <= axis["right"] + 0.5, label
            assert label["size"] >= 11, label
        for before, after in zip(labels, labels[1:], strict=False):
            assert before["right"] <= after["left"], (before, after)


def assert_legend_visible(page) -> None:
    legend = page.locator("#retry-chart ul.legend li")
    assert legend.all_inner_texts() == [
        "recovered",
        "failed (retries exhausted, or raised)",
        "slowest recovery",
    ]
    assert all(item.is_visible() for item in legend.all())


def fill_last_minutes_of_events(spread: float = 400, ago: float = 0) -> None:
    """What the demo leaves: a few dozen events within a few minutes
    (``spread`` seconds, ending ``ago`` seconds ago)."""
    now = timezone.now()
    rng = random.Random(7)
    RetryEvent.objects.bulk_create(
        RetryEvent(
            occurred_at=now - datetime.timedelta(seconds=ago + rng.uniform(0, spread)),
            database="orca_demo",
            phase=rng.choice(["connect", "execute", "transaction"]),
            outcome=rng.choice(["recovered"] * 5 + ["raised"]),
            error_type="AdminShutdown",
            sqlstate="57P01",
            message="terminating connection due to serverless scale event timeout",
            attempts=rng.randint(1, 4),
            elapsed_ms=rng.uniform(20, 1800),
        )
        for _ in range(53)
    )


def test_admin_in_a_browser(live_server, django_user_model, kill_backend, images):
    # Everything touching the database happens before Playwright starts:
    # its event loop makes Django refuse synchronous ORM calls.
    Note.objects.create(text="a")
    kill_backend()
    assert Note.objects.count() == 1  # a real scale event, recovered
    real = RetryEvent.objects.get()
    fill_week_of_events()
    make_user(django_user_model, "operator", staff=True)
    make_user(django_user_model, "customer", staff=False)
    images.mkdir(parents=True, exist_ok=True)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            log_in(page, live_server, "operator")
            page.wait_for_selector("#retry-chart svg")
            page.click("#toggle-nav-sidebar")  # more room for the list
            page.evaluate("window.scrollTo(0, 0)")
            assert page.locator("#retry-chart svg").count() == 2
            assert page.locator("#retry-chart rect.recovered").count() > 10
            assert page.locator("#retry-chart rect.slowest").count() > 10
            assert page.locator("#retry-chart rect.failed").count() > 0
            assert "events" in page.inner_text("#retry-chart .summary")
            assert page.inner_text("#retry-chart .summary").startswith("Last 7 days")
            assert page.locator("#result_list tbody tr").count() == 50  # one page
            assert_labels_fit(page)
            assert_legend_visible(page)
            page.screenshot(path=str(images / "retry-events-changelist.png"))

            # On a phone: labels keep their size and fit, every other one shown.
            phone = browser.new_page(viewport={"width": 390, "height": 844})
            log_in(phone, live_server, "operator")
            phone.wait_for_selector("#retry-chart svg")
            assert_labels_fit(phone)
            assert_legend_visible(phone)
            chart_box = phone.locator("#retry-chart").bounding_box()
            assert chart_box is not None and chart_box["width"] <= 390
            phone.locator("#retry-chart").screenshot(path=str(images / "retry-events-phone.png"))
            phone.close()

            # Filters: the sidebar links narrow the list and the chart.
            page.click("#changelist-filter a:text-is('Exhausted')")
            page.wait_for_url("**outcome__exact=exhausted**")
            outcomes = page.locator("#result_list td.field-outcome").all_inner_texts()
            assert outcomes and set(outcomes) == {"Exhausted"}
            assert page.locator("#retry-chart rect.recovered").count() == 0
            page.click("#changelist-filter a:text-is('reports')")
            page.wait_for_url("**database=reports**")
            assert set(page.locator("#result_list td.field-database").all_inner_texts()) <= {
                "reports"
            }

            # Search on the statement.
            page.goto(f"{live_server.url}/admin/orca_db_app/retryevent/")
            page.fill("#searchbar", "testapp_note")
            page.press("#searchbar", "Enter")
            page.wait_for_url("**q=testapp_note**")
            assert page.locator("#result_list tbody tr").count() == 1
            page.screenshot(path=str(images / "retry-events-search.png"), full_page=True)

            # The detail page of the real event: read-only.
            page.click("#result_list tbody tr th a")
            page.wait_for_url(f"**/retryevent/{real.pk}/change/**")
            assert "Recovered" in page.inner_text("#content-main")
            assert page.locator("input[name=_save]").count() == 0
            page.screenshot(path=str(images / "retry-event-detail.png"), full_page=True)

            # A user who is not staff cannot get in.
            other = browser.new_page()
            log_in(other, live_server, "customer")
            other.wait_for_selector(".errornote")
            assert "staff account" in other.inner_text(".errornote")
            other.goto(f"{live_server.url}/admin/orca_db_app/retryevent/")
            assert "/admin/login/" in other.url
        finally:
            browser.close()

    # After the demo every event sits in a few minutes: the chart shows the
    # last hour, minute by minute, instead of one thin bar of a week.
    RetryEvent.objects.all().delete()
    fill_last_minutes_of_events()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            log_in(page, live_server, "operator")
            page.wait_for_selector("#retry-chart svg")
            assert page.inner_text("#retry-chart .summary").startswith("Last hour")
            assert page.inner_text("#retry-chart figcaption >> nth=0") == "Events per minute"
            assert (
                page.locator("#retry-chart svg.events, #retry-chart figure.events rect").count()
                >= 5
            )
            assert_labels_fit(page)
            page.locator("#retry-chart").screenshot(
                path=str(images / "retry-events-after-demo.png")
            )
        finally:
            browser.close()

    # A 30 s demo looked at two minutes later: 5 minutes from its first
    # minute, 5 seconds a bar (before: one bar at the far right of an hour).
    RetryEvent.objects.all().delete()
    fill_last_minutes_of_events(spread=30, ago=120)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            log_in(page, live_server, "operator")
            page.wait_for_selector("#retry-chart svg")
            assert page.inner_text("#retry-chart .summary").startswith("5 minutes from ")
            assert page.inner_text("#retry-chart figcaption >> nth=0") == "Events per 5 seconds"
            bars = page.locator("#retry-chart figure.events rect")
            assert bars.count() >= 5
            # The bars sit well inside the axis, each several pixels wide.
            axis = page.locator("#retry-chart figure.events svg").bounding_box()
            boxes = [bars.nth(i).bounding_box() for i in range(bars.count())]
            assert all(box["x"] + box["width"] < axis["x"] + 0.8 * axis["width"] for box in boxes)
            assert all(box["width"] >= 5 for box in boxes)
            assert_labels_fit(page)
            page.locator("#retry-chart").screenshot(
                path=str(images / "retry-events-short-demo.png")
            )
        finally:
            browser.close()

"""The line between the core and its hosts (docs/architecture.md): the core
decides the outcome and raises it through the table of the host whose
settings it was given; two hosts in one process each get their own classes.
No database needed."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError as DjangoOperationalError

from orca_db import conf, exceptions, options, outcomes
from orca_db.classify import classify
from orca_db.commit_resolution import LostCommit, question_failed, unresolved
from orca_db.retry import Operation, run
from tests.driver_errors import server_error


def scale_event() -> BaseException:
    return server_error(
        "AdminShutdown", "57P01", "terminating connection due to serverless scale event timeout"
    )


def exhausted(settings: options.RetrySettings) -> BaseException:
    attempts = iter([scale_event(), scale_event()])

    def attempt():
        raise next(attempts)

    with pytest.raises(outcomes.RetriesExhausted) as raised:
        run(Operation("unit", "connect", settings), attempt, lambda error, failure: None)
    return raised.value


def test_the_core_raises_its_own_classes_without_a_host():
    error = exhausted(options.RetrySettings(max_attempts=2, backoff_initial=0, backoff_max=0))
    assert type(error) is outcomes.RetriesExhausted
    assert not isinstance(error, DjangoOperationalError)


def test_the_django_host_gets_djangos_classes_in_the_same_process():
    error = exhausted(conf.RetrySettings(max_attempts=2, backoff_initial=0, backoff_max=0))
    assert type(error) is exceptions.RetriesExhausted
    assert isinstance(error, DjangoOperationalError)
    assert isinstance(error, outcomes.RetriesExhausted)  # what any host raises


@pytest.mark.parametrize(
    "name",
    [
        "ScaleEventError",
        "TransactionRolledBack",
        "OutcomeUnknown",
        "RetriesExhausted",
        "SessionStateLost",
        "DeadlineExceeded",
        "WriteDeadlineExceeded",
    ],
)
def test_each_django_error_is_the_core_outcome_and_an_operational_error(name):
    django_class = getattr(exceptions, name)
    core_class = getattr(outcomes, name)
    assert issubclass(django_class, core_class)
    assert issubclass(django_class, DjangoOperationalError)
    assert exceptions.DJANGO_ERRORS.of(core_class) is django_class
    assert outcomes.CORE_ERRORS.of(core_class) is core_class


def test_session_state_lost_keeps_what_was_lost():
    error = exceptions.SessionStateLost("lost", lost=("advisory lock",))
    assert error.lost == ("advisory lock",) and str(error) == "lost"


def test_a_bad_setting_is_the_hosts_configuration_error():
    with pytest.raises(outcomes.ConfigurationError, match="'deadline'") as core:
        options.parse_retry_settings({"deadline": -1})
    assert not isinstance(core.value, ImproperlyConfigured)
    with pytest.raises(ImproperlyConfigured, match="'deadline'") as django:
        conf.parse_retry_settings({"deadline": -1})
    assert isinstance(django.value, outcomes.ConfigurationError)
    assert str(core.value) == str(django.value)


def test_the_hosts_settings_compare_by_their_values():
    assert conf.parse_retry_settings({"deadline": 5}) == conf.RetrySettings(deadline=5)
    assert type(options.parse_retry_settings(None)) is options.RetrySettings
    assert type(conf.parse_retry_settings(None)) is conf.RetrySettings


def test_a_lost_commit_is_unknown_in_the_hosts_class():
    lost = scale_event()
    pending = LostCommit("7", 1, None, None, [], lost, classify(lost))
    assert type(unresolved("db", pending, None)) is outcomes.OutcomeUnknown
    django = unresolved("db", pending, None, exceptions.DJANGO_ERRORS)
    assert type(django) is exceptions.OutcomeUnknown
    asked = question_failed("db", pending, scale_event(), exceptions.DJANGO_ERRORS)
    assert type(asked) is exceptions.OutcomeUnknown


def test_a_table_refuses_a_class_that_is_not_the_outcome():
    with pytest.raises(TypeError, match="does not subclass"):
        outcomes.ErrorTable({outcomes.OutcomeUnknown: exceptions.TransactionRolledBack})


def test_listeners_of_the_core_hear_every_event_and_never_raise(caplog):
    import datetime

    from orca_db import events

    heard = []

    def broken(event):
        raise RuntimeError("a listener's own bug")

    events.listen(broken)
    events.listen(heard.append)
    try:
        event = events.SettledEvent("unit", "execute", datetime.datetime.now(datetime.UTC))
        events.deliver(event)
    finally:
        events.unlisten(broken)
        events.unlisten(heard.append)
    assert heard == [event]
    assert "listener" in caplog.text and "RuntimeError" in caplog.text
    events.deliver(event)
    assert heard == [event]  # no longer listening


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"deadline": -1}, "aurora['deadline'] must be at least 0, got -1."),
        ({"secret": ""}, "aurora['secret'] must be a non-empty string, got ''."),
        ("soon", "aurora must be a dict, got str."),
    ],
)
def test_a_host_names_the_options_as_its_users_write_them(value, message):
    with pytest.raises(outcomes.ConfigurationError) as raised:
        options.parse_retry_settings(value, where="aurora")
    assert str(raised.value) == message


def test_a_sqlalchemy_wrapper_is_judged_by_the_driver_error_behind_it():
    """What SQLAlchemy raises around a driver error (``orig``, and ``from``
    it) tells the same facts as the driver error itself."""
    sa_exc = pytest.importorskip("sqlalchemy.exc")
    from orca_db.classify import driver_error

    inner = scale_event()
    try:
        try:
            raise inner
        except Exception as error:
            raise sa_exc.OperationalError("SELECT 1", None, error) from error
    except sa_exc.OperationalError as wrapped:
        assert driver_error(wrapped) is inner
        assert classify(wrapped) == classify(inner)
        assert classify(wrapped).sqlstate == "57P01" and classify(wrapped).retryable

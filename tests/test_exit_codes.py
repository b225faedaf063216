"""One exit-code convention for every orca command (docs/commands.md#exit-codes):
0 success, 1 what the command waited for or checked did not happen, 2 a
usage or configuration error. Each command is run as from a shell
(``run_from_argv``) with a bad option, an unknown alias, an unreachable
database, settings the backend refuses, and successfully.

Before the convention, aurora_migrate and aurora_prune_events exited 1 for
bad options and unknown aliases, and aurora_migrate, aurora_verify and
aurora_blockers waited the backend's 60 s deadline for an unreachable
database whatever their own timeout said.
"""

from __future__ import annotations

import time

import pytest

from orca_db.testing.postgres import free_port
from tests.commands import database_alias, run_command


@pytest.fixture(autouse=True)
def _database_access(django_db_setup, django_db_blocker):
    # As a shell would: no test transaction around the command, any alias.
    with django_db_blocker.unblock():
        yield


#: (command, an invalid option, the option that bounds its wait, a success run);
#: every run gets the command's ARGUMENTS too.
ARGUMENTS = {"aurora_prune_events": ["--days", "30"]}
COMMANDS = {
    "aurora_wake": (["--timeout", "-1"], "--timeout", []),
    "aurora_verify": (["--timeout", "abc"], "--timeout", []),
    "aurora_blockers": (["--long-query", "-5"], "--timeout", []),
    "aurora_migrate": (["--lock-timeout", "5 parsecs"], "--wake-timeout", ["--plan"]),
    "aurora_prune_events": (["--batch-size", "0"], "--timeout", []),
    "aurora_demo": (["--workers", "0"], "--timeout", None),  # success: test_aurora_demo
}


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_option_exits_2(command):
    bad, _, _ = COMMANDS[command]
    out, err, code = run_command(command, *ARGUMENTS.get(command, []), *bad)
    assert code == 2, out + err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_alias_exits_2(command):
    out, err, code = run_command(command, *ARGUMENTS.get(command, []), "--database", "nope")
    assert code == 2, out + err
    assert "Database alias 'nope' does not exist" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", COMMANDS)
def test_unreachable_database_exits_1_within_its_own_timeout(command):
    _, timeout_option, _ = COMMANDS[command]
    # Nothing listens there: every attempt is refused, which a wait could cure.
    with database_alias("unreachable", PORT=str(free_port())):
        started = time.monotonic()
        out, err, code = run_command(
            command, *ARGUMENTS.get(command, []), "--database", "unreachable", timeout_option, "1"
        )
        waited = time.monotonic() - started
    assert code == 1, out + err
    # The backend's deadline is 60 s; the command's own 1 s bounds the wait.
    assert waited < 10
    assert "did not answer within 1 s (waited" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_settings_the_backend_refuses_exit_2_in_one_line(command):
    _, timeout_option, _ = COMMANDS[command]
    with database_alias("misconfigured", OPTIONS={"aurora": {"deadline": "abc"}}):
        out, err, code = run_command(
            command, *ARGUMENTS.get(command, []), "--database", "misconfigured", timeout_option, "5"
        )
    assert code == 2, out + err
    assert err.strip().splitlines() == [
        "CommandError: Improperly configured: OPTIONS['aurora']['deadline'] must be a "
        "number, got 'abc'."
    ]


@pytest.mark.parametrize(
    "command", [name for name, case in COMMANDS.items() if case[2] is not None]
)
def test_success_exits_0(command):
    _, _, arguments = COMMANDS[command]
    out, err, code = run_command(command, *ARGUMENTS.get(command, []), *arguments)
    assert code == 0, out + err


@pytest.mark.parametrize("command", COMMANDS)
def test_an_error_waiting_cannot_cure_reads_the_same_in_every_command(command):
    """docs/commands.md#exit-codes: one line, ``CommandError: ...``. Before:
    aurora_wake alone wrote ``Database 'x' cannot be reached, and waiting
    will not help: ...``."""
    _, timeout_option, _ = COMMANDS[command]
    with database_alias("badpassword", PASSWORD="not-the-password"):
        out, err, code = run_command(
            command, *ARGUMENTS.get(command, []), "--database", "badpassword", timeout_option, "5"
        )
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "CommandError: Cannot connect to database 'badpassword', and waiting will not help: "
    ), lines[0]
    assert "password authentication failed" in lines[0]
    assert "not-the-password" not in out + err


def test_a_refused_password_exits_2_at_once():
    with database_alias("badpassword", PASSWORD="not-the-password"):
        started = time.monotonic()
        out, err, code = run_command("aurora_blockers", "--database", "badpassword")
    assert code == 2, out + err
    assert time.monotonic() - started < 5
    assert "waiting will not help" in err and "password authentication failed" in err
    assert "not-the-password" not in out + err

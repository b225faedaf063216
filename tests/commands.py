"""Running management commands in tests the way ``manage.py`` runs them."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterator
from typing import Any

from django.core.management import get_commands, load_command_class
from django.db import connections


def run_command(name: str, *args: str) -> tuple[str, str, int]:
    """Run ``manage.py name args...`` in-process, as from a shell: argparse
    errors, ``CommandError`` and ``SystemExit`` become an exit code, as
    ``run_from_argv`` makes them. Returns (stdout, stderr, exit code)."""
    out, err = io.StringIO(), io.StringIO()
    command_class = type(load_command_class(get_commands()[name], name))
    command = command_class(stdout=out, stderr=err)
    code = 0
    # argparse writes its usage errors to sys.stderr itself.
    with contextlib.redirect_stderr(err):
        try:
            command.run_from_argv(["manage.py", name, *args])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return out.getvalue(), err.getvalue(), code


@contextlib.contextmanager
def database_alias(alias: str, **overrides: Any) -> Iterator[str]:
    """A temporary DATABASES alias: ``default``'s settings with ``overrides``."""
    settings = copy.deepcopy(connections["default"].settings_dict)
    settings.update(overrides)
    connections.settings[alias] = settings
    try:
        yield alias
    finally:
        with contextlib.suppress(Exception):
            connections[alias].close()
        with contextlib.suppress(AttributeError):
            del connections[alias]
        del connections.settings[alias]

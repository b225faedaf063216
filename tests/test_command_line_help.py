"""The ``python -m`` tools' ``--help`` as a user reads it: the program's
real name, a description that is a sentence, help for every option, and
the commands they take (before, the Data API endpoint's read
``usage: __main__.py``, a description ending in "::", no help for
``--user``/``--password`` and no command list)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def help_of(module: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    "module",
    ["orca_db.testing.data_api", "orca_db.testing.simulator", "orca_db.testing.embedded"],
)
def test_help_reads_as_a_manual(module):
    text = help_of(module)
    assert text.startswith(f"usage: python -m {module} ")
    assert "__main__" not in text
    description = text.split("\n\n")[1].strip()
    assert description.endswith("."), description
    # Every option has a line of help after its name.
    options = text.split("options:", 1)[1].split("\n\n")[0]
    for line in options.splitlines()[1:]:
        if re.match(r"\s+--?\w", line):
            assert re.match(r"\s+\S.*?\s{2,}\S", line) or line.rstrip().endswith(
                ("PASSWORD", "USER", "DIR", "UPSTREAM", "LISTEN", "PORT")
            ), line
    assert "commands" in text


def test_data_api_help_lists_its_commands_and_every_option():
    text = help_of("orca_db.testing.data_api")
    for command in ("pause", "resume", "scale", "lose", "throttle", "stats", "quit"):
        assert re.search(rf"^  {command}\b", text, re.M), command
    for option in ("--upstream", "--user", "--password", "--listen"):
        block = text.split(option, 1)[1].split("\n  -", 1)[0]
        assert len(block.split()) > 2, (option, block)

#!/usr/bin/env python
"""Django's command-line utility for the orca-db project."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orca_db_project.settings")
    from orca_db_project import ensure_secret_key, execute_from_command_line

    if os.environ["DJANGO_SETTINGS_MODULE"] == "orca_db_project.settings":
        ensure_secret_key()  # this checkout's, made once (docs/settings.md)
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Generate orca_db/sql/pg_catalog.txt: the built-in functions, operators
and types that a replayable read may use.

    python scripts/generate_pg_functions.py            # every server found
    python scripts/generate_pg_functions.py --bindir /usr/lib/postgresql/15/bin

Starts a throwaway server (orca_db.testing.postgres.PostgresServer) from
each PostgreSQL installation found: Debian's under /usr/lib/postgresql, and
the one inside the ``pgserver`` wheel. Reads pg_proc, pg_operator and
pg_type of the pg_catalog schema, and allows a function name when every
overload of it, in every version read, is IMMUTABLE or STABLE, or VOLATILE
and reviewed as free of side effects (orca_db/sql/catalog_review.py), and
the review does not deny it. Fails, listing them, when a VOLATILE function
is in neither reviewed list: review it first.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orca_db.sql import catalog_review  # noqa: E402
from orca_db.testing.postgres import PostgresServer  # noqa: E402

OUTPUT = ROOT / "orca_db" / "sql" / "pg_catalog.txt"

# Functions taking or returning "internal", and trigger functions, cannot be
# called from a query: they are left out, reviewed or not.
PROCS = """
SELECT proname, provolatile, prokind FROM pg_proc
WHERE pronamespace = 'pg_catalog'::regnamespace
  AND NOT 'internal'::regtype = ANY (proargtypes::oid[])
  AND prorettype NOT IN ('internal'::regtype, 'trigger'::regtype, 'event_trigger'::regtype)
"""
OPERATORS = "SELECT oprname FROM pg_operator WHERE oprnamespace = 'pg_catalog'::regnamespace"
TYPES = "SELECT typname FROM pg_type WHERE typnamespace = 'pg_catalog'::regnamespace"


def installations() -> list[Path]:
    found = sorted(Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin"))
    try:
        import pgserver
    except ImportError:
        return found
    return [*found, Path(pgserver.__file__).parent / "pginstall" / "bin"]


def readable_copy(bindir: Path, scratch: Path) -> Path:
    """As root the server runs as another user, who cannot read a wheel
    installed under /root: copy the installation (with the wheel's shared
    libraries, found relative to it) somewhere it can."""
    if os.geteuid() != 0 or not str(bindir).startswith("/root"):
        return bindir
    package = bindir.parent.parent  # .../site-packages/pgserver
    target = scratch / "site-packages"
    shutil.copytree(package, target / package.name, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.exists():
        shutil.copytree(libs, target / libs.name, symlinks=True)
    for path in [scratch, *target.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o055)
    return target / package.name / "pginstall" / "bin"


def read_catalogue(bindir: Path) -> dict:
    server = PostgresServer()
    server.bindir = bindir
    try:
        server.start()
        return {
            "version": server.execute("SHOW server_version")[0][0].split()[0],
            "procs": server.execute(PROCS),
            "operators": {row[0] for row in server.execute(OPERATORS)},
            "types": {row[0] for row in server.execute(TYPES)},
        }
    finally:
        server.destroy()


def allowed_functions(catalogues: Iterable[dict]) -> tuple[set[str], set[str]]:
    """(allowed names, volatile names nobody reviewed)."""
    allowed, refused, unreviewed = set(), set(), set()
    for catalogue in catalogues:
        for name, volatility, kind in catalogue["procs"]:
            reviewed_read = name in catalog_review.VOLATILE_READS
            denied = catalog_review.denial(name) is not None
            if volatility == "v" and not reviewed_read and not denied:
                unreviewed.add(name)
            if denied or kind == "p" or (volatility == "v" and not reviewed_read):
                refused.add(name)
            else:
                allowed.add(name)
    return allowed - refused, unreviewed


def words_section(name: str, values: Iterable[str]) -> str:
    words = " ".join(sorted(values))
    lines = textwrap.wrap(words, width=96, break_long_words=False, break_on_hyphens=False)
    return f"[{name}]\n" + "\n".join(lines) + "\n"


def render(catalogues: list[dict], functions: set[str]) -> str:
    versions = " ".join(c["version"] for c in catalogues)
    operators = set().union(*(c["operators"] for c in catalogues))
    types = set().union(*(c["types"] for c in catalogues))
    majors = " and ".join(sorted({c["version"].split(".")[0] for c in catalogues}))
    return render_text(majors, versions.split(), functions, operators, types)


def render_text(
    majors: str, versions: list[str], functions: Iterable[str], operators: Iterable[str],
    types: Iterable[str],
) -> str:  # fmt: skip
    header = f"""\
# Built-in functions, operators and types of PostgreSQL {majors} ({", ".join(versions)}).
#
# GENERATED by scripts/generate_pg_functions.py from the pg_catalog schema of
# real servers of those versions: do not edit. Run the script again to
# refresh it; orca_db/sql/_pg_catalog.py reads it. A function name is here
# when every overload of it is IMMUTABLE or STABLE, or VOLATILE and reviewed
# by hand as free of side effects. The denylist, reviewed by hand with a
# reason for each name, is orca_db/sql/catalog_review.py. Functions that
# take or return "internal" and trigger functions are left out: a query
# cannot call them. A name missing from the versions read here (newer or
# older releases) is refused, which is the safe side.
"""
    return "\n".join(
        [
            header,
            words_section("versions", versions),
            words_section("functions", functions),
            words_section("operators", operators),
            words_section("types", types),
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bindir", action="append", type=Path, help="a PostgreSQL bin directory")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    bindirs = args.bindir or installations()
    if not bindirs:
        print("no PostgreSQL installation found", file=sys.stderr)
        return 1
    catalogues = []
    with tempfile.TemporaryDirectory(prefix="orca-db-pgcat-") as scratch:
        os.chmod(scratch, 0o755)  # the server's user reads copies made here
        for index, bindir in enumerate(bindirs):
            usable = readable_copy(bindir, Path(scratch) / str(index))
            catalogue = read_catalogue(usable)
            print(
                f"PostgreSQL {catalogue['version']} ({bindir}): {len(catalogue['procs'])} functions"
            )
            catalogues.append(catalogue)
    catalogues.sort(key=lambda c: [int(part) for part in c["version"].split(".")])
    functions, unreviewed = allowed_functions(catalogues)
    if unreviewed:
        print(
            "VOLATILE functions nobody reviewed: add each to VOLATILE_READS or DENIED in "
            "orca_db/sql/catalog_review.py:\n  " + "\n  ".join(sorted(unreviewed)),
            file=sys.stderr,
        )
        return 1
    args.output.write_text(render(catalogues, functions))
    print(f"wrote {args.output}: {len(functions)} function names")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env bash
# Code quality gates, for CI and before a push: lint, formatting, types, docs.
#   bash scripts/quality.sh
# Needs requirements/dev.txt (ruff, mypy, django-stubs, mkdocs). Runs every
# gate, then fails if any failed, so one run shows all problems.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=()
gate() {
  local name=$1
  shift
  echo "=== $name: $*"
  if ! "$@"; then
    failed+=("$name")
  fi
}

gate "ruff check" ruff check .
gate "ruff format" ruff format --check .
# django-stubs' plugin loads orca_db_project.settings, which starts nothing and
# writes nothing (the embedded server starts at the first connection).
gate "mypy" mypy
gate "docs" mkdocs build --strict --quiet

if [ ${#failed[@]} -gt 0 ]; then
  echo "quality gates failed: ${failed[*]}"
  exit 1
fi
echo "quality gates passed"

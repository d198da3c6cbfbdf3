#!/usr/bin/env bash
# Runs the whole test suite: lint, type check, then pytest against real peers over loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
export PYTHONDONTWRITEBYTECODE=1
echo "== ruff" && .venv/bin/ruff check .
echo "== mypy" && .venv/bin/mypy
echo "== layers" && .venv/bin/python scripts/check_layers.py
echo "== pytest"
set +e
.venv/bin/pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit "$rc"

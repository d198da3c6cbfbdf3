#!/usr/bin/env bash
# Runs the whole test suite: lint, type check, then pytest against real peers over loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
export PYTHONDONTWRITEBYTECODE=1
echo "== ruff" && .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy" && .venv/bin/mypy
echo "== layers" && .venv/bin/python scripts/check_layers.py
echo "== native build" && .venv/bin/python scripts/build_native.py  # for tests/test_native.py
# Two test processes (pytest-xdist): the tests with real peers mostly wait on timers and the
# peers, so two run side by side in about half the time on a 2-core machine. Each worker has its
# own embedded PostgreSQL and picks ports from its own share of the range (tests/helpers/ports.py).
workers="${HELPLINE_TEST_WORKERS:-2}"
echo "== pytest ($workers workers)"
set +e
.venv/bin/pytest -q -p no:cacheprovider -n "$workers" "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
if [ "$rc" = 0 ] && [ $# = 0 ]; then
    # The unit tests of the compiled layers once more, compiled (pbx/native.py: MODULES).
    echo "== pytest, compiled modules (HELPLINE_NATIVE=1)"
    HELPLINE_NATIVE=1 .venv/bin/pytest -q -p no:cacheprovider \
        tests/test_sip_parser.py tests/test_sip_torture.py tests/test_sip_fuzz.py \
        tests/test_fuzz_findings.py tests/test_sip_transaction_*.py \
        tests/test_sip_retransmissions.py tests/test_sip_dialogs.py tests/test_media_*.py \
        tests/test_continuous_media_calls.py
    rc=$?
fi
exit "$rc"

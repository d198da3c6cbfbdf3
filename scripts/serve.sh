#!/usr/bin/env bash
# Runs the helpline service on its embedded defaults (installs what it needs first).
#   ./scripts/serve.sh          the service
#   ./scripts/serve.sh --demo   the service with simulated callers and volunteers (`helpline demo`;
#                               further flags go to it, e.g. --minutes 5 --callers-per-minute 10)
#   HELPLINE_NATIVE=1 ./scripts/serve.sh   with the hot modules compiled (README "Compiled modules")
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
if [[ "${HELPLINE_NATIVE:-0}" != 0 ]]; then  # the compiled modules (pbx/native.py), if out of date
    .venv/bin/python scripts/build_native.py
fi
if [[ "${1:-}" == "--demo" ]]; then
    shift
    exec .venv/bin/helpline demo "$@"
fi
exec .venv/bin/helpline serve "$@"

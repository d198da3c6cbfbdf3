#!/usr/bin/env bash
# Runs the helpline service on its embedded defaults (installs what it needs first).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
exec .venv/bin/helpline serve "$@"

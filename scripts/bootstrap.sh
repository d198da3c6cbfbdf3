#!/usr/bin/env bash
# Installs everything the service and its tests need on a fresh Debian machine:
# Debian tools (sipp, espeak-ng, sox, ffmpeg, graphviz, promtool, baresip, linphone-cli, cc,
# Python's headers, chromium, kamailio) and a virtualenv in .venv.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_deb=()
command -v sipp >/dev/null      || need_deb+=(sip-tester)
command -v espeak-ng >/dev/null || need_deb+=(espeak-ng)
command -v sox >/dev/null       || need_deb+=(sox)
command -v ffmpeg >/dev/null    || need_deb+=(ffmpeg)
command -v dot >/dev/null       || need_deb+=(graphviz)
command -v promtool >/dev/null  || need_deb+=(prometheus)  # promtool validates monitoring/
command -v baresip >/dev/null   || need_deb+=(baresip)     # softphones as test handsets
command -v linphonecsh >/dev/null || need_deb+=(linphone-cli)
command -v cc >/dev/null        || need_deb+=(gcc libc6-dev)  # tests/peers/one_address.c
command -v chromedriver >/dev/null || need_deb+=(chromium chromium-driver)  # browser tests (pbx/web)
[ -x /usr/sbin/kamailio ]       || need_deb+=(kamailio)  # the SIP edge (deploy/kamailio/)
# Debian's own Python first: the service drops root to a system user (README "Running as
# root"), who must be able to read the interpreter (a pyenv build under /root is 0700).
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    for PY in /usr/bin/python3.11 python3.11 python3; do command -v "$PY" >/dev/null && break; done
fi
"$PY" -c "import ensurepip, venv" 2>/dev/null || need_deb+=(python3-venv)
# Python's headers: scripts/build_native.py compiles the hot modules with them (pbx/native.py)
"$PY" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need_deb+=(python3-dev)
if ((${#need_deb[@]})); then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    echo "bootstrap: installing Debian packages: ${need_deb[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        "${need_deb[@]}" >/dev/null
fi

# a venv made from another interpreter is made anew
want=$("$PY" -c 'import os, sys; print(os.path.realpath(sys.executable))')
have=$(sed -n 's/^executable = //p' .venv/pyvenv.cfg 2>/dev/null || true)
if [ -d .venv ] && [ "$(realpath -m "${have:-/none}")" != "$want" ]; then
    echo "bootstrap: .venv was made with ${have:-another Python}; making it anew with $want" >&2
    rm -rf .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    echo "bootstrap: creating .venv with $("$PY" --version) ($want)" >&2
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
    rm -f .venv/.installed-*; touch "$stamp"
fi

# `helpline serve` started as root drops to this system user once its sockets are bound
# (setting run_as_user; README "Running as root").
if [ "$(id -u)" = 0 ] && ! id -u "${HELPLINE_RUN_AS_USER:-helpline}" >/dev/null 2>&1 \
        && [ -n "${HELPLINE_RUN_AS_USER-helpline}" ]; then
    echo "bootstrap: creating system user ${HELPLINE_RUN_AS_USER:-helpline}" >&2
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        "${HELPLINE_RUN_AS_USER:-helpline}"
fi

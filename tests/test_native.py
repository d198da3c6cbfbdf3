"""The compiled modules (pbx/native.py): used only when asked for and built from these very
sources, and then answering exactly as the plain Python ones.

scripts/test.sh builds them (scripts/build_native.py) before pytest runs, and runs the unit
tests of the compiled layers a second time with HELPLINE_NATIVE=1. The tests here that need the
build fail, with what to run, when it is missing or stale.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from ivr.loader import DEFAULT_PLAN
from pbx import native
from tests.helpers.ivr_helpline import without_wrap_up
from tests.helpers.polling import until
from tests.helpers.ports import free_port
from tests.helpers.served import Served, fresh_volunteers
from tests.helpers.service import HANDSET_HOST
from tests.helpers.volunteers import PASSWORD
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.sipp import run_sipp_async

REPO = native.ROOT
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


def python(code: str, *, asked: bool, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter of this checkout, with or without HELPLINE_NATIVE."""
    env = {k: v for k, v in os.environ.items() if k != native.ENV}
    if asked:
        env[native.ENV] = "1"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def require_build() -> None:
    files, why = native.check_build(native.BUILD_DIR)
    assert files, f"the native build cannot be used: {why}"


def fake_build(tmp: Path, **changes: object) -> Path:
    """A build directory whose manifest matches these sources, with ``changes`` made to it."""
    modules = {}
    for module in native.MODULES:
        file = Path(*module.split(".")).with_suffix(SUFFIX)
        (tmp / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp / file).write_bytes(b"")
        modules[module] = {"file": str(file), "sha256": native.source_digest(module)}
    (tmp / f"x__mypyc{SUFFIX}").write_bytes(b"")
    manifest: dict[str, object] = {
        "cache_tag": sys.implementation.cache_tag,
        "runtime": {"name": "x__mypyc", "file": f"x__mypyc{SUFFIX}"},
        "modules": modules,
    }
    manifest.update(changes)
    (tmp / native.MANIFEST).write_text(json.dumps(manifest))
    return tmp


# ------------------------------------------------------------------ when the build is used
def test_a_build_of_these_sources_passes_the_check(tmp_path: Path) -> None:
    files, why = native.check_build(fake_build(tmp_path))
    assert why == "" and set(native.MODULES) <= set(files)


def test_no_build_is_named_with_what_to_run(tmp_path: Path) -> None:
    files, why = native.check_build(tmp_path / "nothing")
    assert files == {} and "no build" in why and "scripts/build_native.py" in why


def test_an_unreadable_manifest_is_named(tmp_path: Path) -> None:
    (tmp_path / native.MANIFEST).write_text("{not json")
    files, why = native.check_build(tmp_path)
    assert files == {} and "unreadable" in why and native.MANIFEST in why


def test_a_manifest_of_another_shape_is_named(tmp_path: Path) -> None:
    build = fake_build(tmp_path)
    manifest = json.loads((build / native.MANIFEST).read_text())
    del manifest["modules"]["pbx.sip.via"]["sha256"]
    (build / native.MANIFEST).write_text(json.dumps(manifest))
    files, why = native.check_build(build)
    assert files == {} and why.startswith("unreadable") and "sha256" in why


def test_a_build_for_another_python_is_not_used(tmp_path: Path) -> None:
    files, why = native.check_build(fake_build(tmp_path, cache_tag="cpython-39"))
    assert files == {} and "cpython-39" in why


def test_a_build_of_another_module_list_is_not_used(tmp_path: Path) -> None:
    build = fake_build(tmp_path)
    manifest = json.loads((build / native.MANIFEST).read_text())
    del manifest["modules"]["pbx.sip.parser"]
    (build / native.MANIFEST).write_text(json.dumps(manifest))
    files, why = native.check_build(build)
    assert files == {} and "another list of modules" in why


@pytest.mark.parametrize("module", ["pbx.media.leg", "pbx.media.udp"])
def test_an_edited_source_makes_the_build_stale_and_is_named(tmp_path: Path, module: str) -> None:
    # A module written in C (pbx.media.udp) is checked against its .c, the file compiled, not
    # against its plain twin.
    assert native.source_path("pbx.media.udp").name == "udp.c"
    build = fake_build(tmp_path)
    manifest = json.loads((build / native.MANIFEST).read_text())
    manifest["modules"][module]["sha256"] = "0" * 64
    (build / native.MANIFEST).write_text(json.dumps(manifest))
    files, why = native.check_build(build)
    assert files == {} and why.startswith(f"stale: {module} changed")


def test_a_missing_compiled_file_is_named(tmp_path: Path) -> None:
    build = fake_build(tmp_path)
    (build / "pbx" / "sip" / f"via{SUFFIX}").unlink()
    files, why = native.check_build(build)
    assert files == {} and "missing" in why and f"via{SUFFIX}" in why


def test_a_stale_build_leaves_plain_python(tmp_path: Path) -> None:
    build = fake_build(tmp_path, cache_tag="cpython-39")
    out = python(
        "import pbx.native as n, pathlib\n"
        f"s = n.activate(pathlib.Path({str(build)!r}))\n"
        "import pbx.sip.parser\n"
        "print(s.active, pbx.sip.parser.__file__.endswith('.py'), s.reason)",
        asked=False,
    )
    assert out.startswith("False True built for cpython-39")


def test_modules_imported_before_the_activation_stay_plain() -> None:
    out = python(
        "import pbx.sip.parser, pbx.native as n\ns = n.activate()\nprint(s.active, s.reason)",
        asked=False,
    )
    assert out.startswith("False imported before: pbx.sip.")


def test_not_asked_for_nothing_compiled_is_loaded() -> None:
    out = python(
        "import sys, pbx.native as n\n"
        "for m in n.MODULES: __import__(m)\n"
        "print(n.STATUS.active, sum(sys.modules[m].__file__.endswith('.py') for m in n.MODULES))",
        asked=False,
    )
    assert out.split() == ["False", str(len(native.MODULES))]


# ------------------------------------------------------------------ the build itself
def test_asked_for_every_listed_module_loads_from_the_build() -> None:
    require_build()
    out = python(
        "import sys, pbx.native as n\n"
        "for m in n.MODULES: __import__(m)\n"
        "print(n.STATUS.active)\n"
        "for m in n.MODULES: print(sys.modules[m].__file__)",
        asked=True,
    )
    active, *files = out.split()
    assert active == "True"
    assert len(files) == len(native.MODULES)
    assert all(f.startswith(str(native.BUILD_DIR)) and f.endswith(SUFFIX) for f in files)


def plain_and_compiled(helper: str) -> tuple[list[str], list[str]]:
    """The lines ``tests/helpers/<helper>.py``'s ``main()`` prints, plain and then compiled,
    without the first line (which says which one ran, and is checked here)."""
    require_build()
    code = f"from tests.helpers.{helper} import main; main()"
    plain = python(code, asked=False).splitlines()
    compiled = python(code, asked=True).splitlines()
    assert plain[0] == "native=False" and compiled[0] == "native=True"
    return plain[1:], compiled[1:]


def test_the_compiled_parser_answers_exactly_as_the_plain_one() -> None:
    # The RFC 4475 torture messages, the fuzz seeds and 40 mutations of each, as datagrams and
    # on a stream (tests/helpers/parse_outcomes.py): every parse, accessor and refusal alike.
    plain, compiled = plain_and_compiled("parse_outcomes")
    assert len(plain) > 4000 and any(line.startswith("refused") for line in plain)
    diverging = [(p, c) for p, c in zip(plain, compiled, strict=True) if p != c]
    assert diverging == []


def test_the_compiled_datagram_io_behaves_as_the_plain_one() -> None:
    # pbx.media.udp in C against its plain twin (tests/helpers/udp_outcomes.py): real datagrams
    # between 127.0.0.1 and 127.0.0.2, their sources, peers from good and bad addresses, and
    # the errors of an empty and of a closed socket, line by line.
    plain, compiled = plain_and_compiled("udp_outcomes")
    assert "send on a closed socket ! OSError EBADF" in plain
    assert plain == compiled


def test_an_endpoint_whose_socket_was_closed_behind_it_sends_nowhere() -> None:
    # The compiled sender reads the socket's descriptor at every send: once the socket is
    # closed, a new socket given the same number must not receive the call's RTP.
    require_build()
    code = textwrap.dedent(
        """
        import asyncio, socket
        import pbx
        from pbx.media.endpoint import RtpEndpoint
        from pbx.media.ports import PortPool

        async def main():
            pool = PortPool("127.0.0.1", 41000, 41999)
            endpoint = await RtpEndpoint.open(pool, media_timeout=None)
            endpoint.set_remote("127.0.0.2", 9, None)
            number = endpoint.port.rtp_socket.fileno()
            endpoint.port.rtp_socket.close()
            other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            while other.fileno() != number:  # take the number the closed socket had
                other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            other.bind(("127.0.0.1", 0))
            sent = endpoint.send(bytes(172))
            print(sent, endpoint.stats.send_errors, endpoint.stats.tx_packets)

        asyncio.run(main())
        """
    )
    for asked in (False, True):
        assert python(code, asked=asked).split() == ["False", "1", "0"]


async def test_a_call_through_the_compiled_service(tmp_path: Path, pg_url: str) -> None:
    # The service with HELPLINE_NATIVE=1: a volunteer's handset (PJSUA) logs in with *1, a
    # carrier's call (sipp) goes through the menu to the volunteer, who answers and hangs up.
    require_build()
    await fresh_volunteers(pg_url, tmp_path, "vera", password=PASSWORD)
    plan = without_wrap_up(DEFAULT_PLAN, tmp_path / "dialplan.yaml")
    env = {native.ENV: "1", "HELPLINE_VOLUNTEER_WHISPER": ""}
    served = Served(tmp_path / "state", plan, pg_url, env=env)
    try:
        served.start()
        await until(lambda: served.ready() == 200, timeout=60)
        started = [e for e in served.events() if e["event"] == "service_started"]
        assert [e["native"] for e in started] == [True], served.describe()
        async with AsyncPjsuaPhone("vera") as phone:
            await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
            assert await phone.register("127.0.0.1", served.sip_port, "vera", PASSWORD) == 200
            assert await phone.make_call(f"sip:*1@{served.target}") == 200
            assert await phone.wait_disconnected(timeout=20) == 200
            call = asyncio.create_task(
                run_sipp_async(
                    "uac_call_key_wait_bye", served.target, service="09000767",
                    keys={"bye_within_ms": "40000"}, timeout_s=60,
                )
            )  # fmt: skip
            incoming = await phone.wait_incoming(timeout=30)
            assert '"Hulplijn NL"' in incoming.remote_uri
            await phone.answer(200)
            await asyncio.sleep(1.0)
            await phone.hangup()
            result = await call
            assert result.ok, result.describe()
        ended = [e for e in served.events() if e["event"] == "call_ended"]
        assert ended, served.describe()
    finally:
        served.stop()

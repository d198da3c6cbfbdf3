"""A real PJSIP handset for tests: pjsua2 in a child process, driven over JSON lines.

Why a child process: pjsua2 runs its own C threads and keeps process-global state; inside the
pytest/asyncio process it would fight the event loop and could not be torn down cleanly. The
worker (``pjsua_worker.py``) runs every pjsua2 callback in its own main thread and always dies:
on ``close()``, on stdin EOF (our process went away) and after ``max_life`` seconds at most.

pjsua's log (SIP messages included, ``log_text()``) lives in a temporary directory that
``close()`` deletes unless ``HELPLINE_KEEP_PEER_LOGS=1`` (or an explicit ``log_dir``) is given;
errors raised while the phone runs carry the log's tail.

Every call here blocks for at most its ``timeout`` (plus a small margin). From ``async`` tests
whose SIP service runs in the same event loop, use :class:`AsyncPjsuaPhone` (or
``asyncio.to_thread``) so the loop keeps serving while the handset waits.

Typical use::

    with PjsuaPhone("volunteer") as phone:
        phone.start(free_port())
        assert phone.register("127.0.0.1", pbx_port, "1001", "secret") == 200
        inc = phone.wait_incoming(timeout=10)
        assert inc.display == "Hulplijn"          # what the volunteer's handset shows
        phone.answer()
        phone.record(tmp_path / "heard.wav")
        ...
        phone.hangup()
        wav = phone.stop_record()
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

WORKER = Path(__file__).with_name("pjsua_worker.py")
_MARGIN_S = 5.0  # extra time we grant the worker beyond the timeout it enforces itself


class PjsuaError(RuntimeError):
    """The worker refused a command, timed out, or died. Carries its log tail for diagnosis."""


@dataclass(frozen=True)
class PhoneEvent:
    kind: str  # ready, reg_state, incoming, call_state, media_state, dtmf, record_done, exit
    data: dict[str, Any]
    t: float  # worker's monotonic clock


_HEADER_LINE = re.compile(r"^([A-Za-z0-9!%'*+.^_`|~-]+)\s*:\s*(.*)$")
_COMPACT = {
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "v": "via",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
}


def parse_headers(raw: str) -> dict[str, list[str]]:
    """Header name (lower-case, compact forms expanded) -> values, from a raw SIP message."""
    head = raw.replace("\r\n", "\n").split("\n\n", 1)[0].split("\n")[1:]
    out: dict[str, list[str]] = {}
    last: str | None = None
    for line in head:
        if line[:1] in (" ", "\t") and last is not None:  # folded continuation line
            out[last][-1] += " " + line.strip()
            continue
        m = _HEADER_LINE.match(line)
        if not m:
            continue
        name = m.group(1).lower()
        name = _COMPACT.get(name, name)
        out.setdefault(name, []).append(m.group(2).strip())
        last = name
    return out


def display_name(name_addr: str) -> str | None:
    """Display name of a From/To value: ``"Hulplijn" <sip:..>`` -> ``Hulplijn``; None if absent."""
    m = re.match(r'^\s*"((?:[^"\\]|\\.)*)"\s*<', name_addr)
    if m:
        return re.sub(r"\\(.)", r"\1", m.group(1))
    m = re.match(r"^\s*([^<\"]+?)\s*<", name_addr)
    return m.group(1) if m else None


@dataclass(frozen=True)
class IncomingCall:
    """An INVITE as the handset received it: what a volunteer's phone would show."""

    call: int  # worker handle, pass as ``call=`` to target this call explicitly
    remote_uri: str  # From, as pjsua parsed it
    local_uri: str  # To
    remote_contact: str
    invite: str  # the whole INVITE, raw text (request line, headers, SDP)
    headers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def from_header(self) -> str:
        return self.headers.get("from", [""])[0]

    @property
    def to_header(self) -> str:
        return self.headers.get("to", [""])[0]

    @property
    def display(self) -> str | None:
        return display_name(self.from_header)

    @property
    def request_uri(self) -> str:
        return self.invite.split("\n", 1)[0].split(" ")[1]

    @property
    def sdp(self) -> str:
        parts = self.invite.replace("\r\n", "\n").split("\n\n", 1)
        return parts[1] if len(parts) > 1 else ""

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


class PjsuaPhone:
    """One pjsua2 handset (one SIP transport, optionally one registration, N calls)."""

    def __init__(
        self,
        name: str = "phone",
        *,
        log_dir: Path | str | None = None,
        max_life: float = 300.0,
        log_level: int = 4,
    ) -> None:
        self.name = name
        self.max_life = max_life
        self.log_level = log_level
        self._own_dir = log_dir is None
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix=f"pjsua-{name}-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.transport = "udp"
        self.bind = "127.0.0.1"
        self.user = name
        self._proc: subprocess.Popen[str] | None = None
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._responses: dict[int, dict[str, Any]] = {}
        self._events: list[PhoneEvent] = []
        self._dead = False
        self._reader: threading.Thread | None = None
        self._stderr: Any = None
        self._current: int | None = None  # handle of the call the test last got

    # -- process lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> PjsuaPhone:
        self._spawn()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _spawn(self) -> None:
        if self._proc is not None:
            return
        self._stderr = open(self.log_dir / "worker-stderr.log", "w")  # noqa: SIM115
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._proc = subprocess.Popen(
            [sys.executable, str(WORKER), "--max-life", str(self.max_life)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, name=f"pjsua-{self.name}", daemon=True)
        self._reader.start()
        self.wait_event("ready", timeout=20)

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self._cond:
                if "event" in msg:
                    kind = msg.pop("event")
                    self._events.append(PhoneEvent(kind, msg, float(msg.pop("t", 0.0))))
                else:
                    self._responses[int(msg["id"])] = msg
                self._cond.notify_all()
        with self._cond:
            self._dead = True
            self._cond.notify_all()

    def kill(self) -> None:
        """The handset vanishes (power cut, network gone): no BYE, no more RTP."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=5)

    def close(self) -> None:
        """Ends the worker: polite quit, then kill. Safe to call twice."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"id": 0, "cmd": "quit"}) + "\n")
                proc.stdin.flush()
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=2)
        if self._stderr is not None:
            self._stderr.close()
        self._proc = None
        if self._own_dir and not os.environ.get("HELPLINE_KEEP_PEER_LOGS"):
            shutil.rmtree(self.log_dir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def log_text(self, tail: int = 20000) -> str:
        """pjsua's own log (SIP messages included) plus the worker's stderr, last chars."""
        parts = []
        for name in ("pjsua.log", "worker-stderr.log"):
            p = self.log_dir / name
            if p.exists():
                parts.append(f"--- {name} ---\n" + p.read_text(errors="replace")[-tail:])
        return "\n".join(parts)

    def _request(self, cmd: str, budget: float, /, **args: Any) -> Any:
        if self._proc is None:
            self._spawn()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        # call=None means "the call this test is dealing with": the one the last
        # wait_incoming/make_call returned (while it lives, or for waits on it in any case).
        if "call" in args and args["call"] is None and self._current is not None:
            with self._cond:
                usable = cmd in ("wait_state", "call_info", "stop_record") or not self._ended(
                    self._current
                )
            if usable:
                args["call"] = self._current
        mid = next(self._ids)
        try:
            proc.stdin.write(json.dumps({"id": mid, "cmd": cmd, "args": args}) + "\n")
            proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise PjsuaError(f"{self.name}: worker gone ({exc})\n{self.log_text()}") from exc
        end = time.monotonic() + budget + _MARGIN_S
        with self._cond:
            while mid not in self._responses:
                left = end - time.monotonic()
                if self._dead or left <= 0:
                    why = "died" if self._dead else f"did not answer {cmd!r} in {budget}s"
                    # A worker stuck in pjsua is useless: kill it so the test ends cleanly.
                    proc.kill()
                    raise PjsuaError(f"{self.name}: worker {why}\n{self.log_text()}")
                self._cond.wait(left)
            msg = self._responses.pop(mid)
        if not msg.get("ok"):
            raise PjsuaError(
                f"{self.name}: {cmd} failed: {msg.get('error')}"
                f"{chr(10) + msg['trace'] if 'trace' in msg else ''}"
            )
        return msg.get("result")

    # -- events ----------------------------------------------------------------------------------

    def events(self, kind: str | None = None) -> list[PhoneEvent]:
        """Everything the handset reported so far (state changes, digits, registrations)."""
        with self._cond:
            return [e for e in self._events if kind is None or e.kind == kind]

    def wait_event(
        self,
        kind: str,
        timeout: float = 10.0,
        pred: Callable[[PhoneEvent], bool] | None = None,
        after: int = 0,
    ) -> PhoneEvent:
        """First event of ``kind`` (from index ``after`` in the event list) matching ``pred``."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self._events[after:]:
                    if e.kind == kind and (pred is None or pred(e)):
                        return e
                left = end - time.monotonic()
                if left <= 0 or self._dead:
                    raise PjsuaError(
                        f"{self.name}: no {kind!r} event within {timeout}s; "
                        f"events: {[(e.kind, e.data) for e in self._events][-15:]}"
                    )
                self._cond.wait(left)

    # -- commands ----------------------------------------------------------------------------------

    def start(
        self,
        local_port: int,
        transport: Literal["udp", "tcp", "tls"] = "udp",
        *,
        bind: str = "127.0.0.1",
        user: str | None = None,
        rtp_port: int = 0,
        codecs: tuple[str, ...] = ("PCMU", "PCMA"),
        auto_ringing: bool = True,
        srtp: int = 0,
    ) -> int:
        """Opens the SIP transport on bind:local_port. Incoming INVITEs are answered 180
        at once when ``auto_ringing`` (as a real handset rings). ``srtp``: SRTP with SDES,
        0 off, 1 optional, 2 mandatory (keys only over TLS). Returns the port."""
        self.user = user or self.name
        res = self._request(
            "start",
            20,
            port=local_port,
            transport=transport,
            bind=bind,
            user=self.user,
            rtp_port=rtp_port,
            codecs=list(codecs),
            auto_ringing=auto_ringing,
            srtp=srtp,
            log_path=str(self.log_dir / "pjsua.log"),
            log_level=self.log_level,
        )
        self.port, self.transport, self.bind = local_port, transport, bind
        del res
        return local_port

    @property
    def uri(self) -> str:
        """Direct SIP URI of this handset (no registrar involved)."""
        tp = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{self.user}@{self.bind}:{self.port}{tp}"

    def register(
        self,
        registrar_host: str,
        registrar_port: int,
        username: str,
        password: str,
        realm: str = "*",
        expires: int = 300,
        *,
        display: str | None = None,
        timeout: float = 10.0,
    ) -> int:
        """REGISTERs (answering a digest challenge); returns the final status code."""
        res = self._request(
            "register",
            timeout,
            host=registrar_host,
            port=registrar_port,
            username=username,
            password=password,
            realm=realm,
            expires=expires,
            display=display,
            timeout=timeout,
        )
        return int(res["code"])

    def unregister(self, timeout: float = 10.0) -> int:
        """REGISTER with Expires 0; returns the final status code."""
        return int(self._request("unregister", timeout, timeout=timeout)["code"])

    def wait_incoming(self, timeout: float = 10.0, *, include_ended: bool = False) -> IncomingCall:
        """Next INVITE not returned by an earlier wait_incoming. Calls that already ended
        (e.g. CANCELled while ringing) are skipped unless ``include_ended``."""
        seen = getattr(self, "_incoming_seen", 0)

        def wanted(e: PhoneEvent) -> bool:
            return include_ended or not self._ended(int(e.data["call"]))

        ev = self.wait_event("incoming", timeout, pred=wanted, after=seen)
        with self._cond:
            self._incoming_seen = self._events.index(ev) + 1
        d = ev.data
        self._current = int(d["call"])
        return IncomingCall(
            call=int(d["call"]),
            remote_uri=d["remote_uri"],
            local_uri=d["local_uri"],
            remote_contact=d["remote_contact"],
            invite=d["invite"],
            headers=parse_headers(d["invite"]),
        )

    def _ended(self, handle: int) -> bool:
        return any(
            e.kind == "call_state"
            and e.data["call"] == handle
            and e.data["state"] == "DISCONNECTED"
            for e in self._events
        )

    def call_handle(self) -> int:
        """The handle of the call the test last got (made or received)."""
        assert self._current is not None
        return self._current

    def xfer(self, uri: str, *, call: int | None = None, timeout: float = 5.0) -> None:
        """The handset's transfer key: REFER the peer of the live call (or ``call``) to
        ``uri``; how it goes arrives as ``xfer_status`` events (status, final)."""
        self._request("xfer", timeout, uri=uri, call=call)

    def xfer_replaces(
        self, dest_call: int, *, call: int | None = None, timeout: float = 5.0
    ) -> None:
        """Attended transfer: REFER the peer of ``call`` to the peer of ``dest_call``
        (Refer-To with Replaces naming ``dest_call``'s dialog)."""
        self._request("xfer_replaces", timeout, dest_call=dest_call, call=call)

    def answer(self, code: int = 200, *, call: int | None = None, timeout: float = 5.0) -> str:
        """Answers the newest live call (or ``call``) with ``code``; returns the call state."""
        return str(self._request("answer", timeout, code=code, call=call, timeout=timeout)["state"])

    def hangup(self, code: int = 0, *, call: int | None = None, timeout: float = 5.0) -> int:
        """BYE / CANCEL / reject (with ``code``); waits for DISCONNECTED; returns last status."""
        return int(
            self._request("hangup", timeout, code=code, call=call, timeout=timeout)["status"]
        )

    def make_call(
        self,
        uri: str,
        *,
        wait: bool = True,
        timeout: float = 15.0,
        headers: dict[str, str] | None = None,
    ) -> int:
        """INVITEs ``uri`` (through the registrar account if registered, else directly).
        With ``wait`` returns the final status (200 once media is up, or the failure code);
        without, returns 0 at once (use wait_state)."""
        res = self._request(
            "make_call", timeout, uri=uri, wait=wait, timeout=timeout, headers=headers
        )
        self._current = int(res["call"])
        return int(res["status"])

    def wait_state(self, state: str, timeout: float = 10.0, *, call: int | None = None) -> str:
        """Waits until the call reaches ``state`` (CONFIRMED, EARLY...) or DISCONNECTED."""
        return str(
            self._request("wait_state", timeout, state=state, call=call, timeout=timeout)["state"]
        )

    def wait_disconnected(self, timeout: float = 10.0, *, call: int | None = None) -> int:
        """Waits until the call ends (e.g. the far end hung up); returns its last status."""
        res = self._request("wait_state", timeout, state="DISCONNECTED", call=call, timeout=timeout)
        if res["state"] != "DISCONNECTED":
            raise PjsuaError(f"{self.name}: call still {res['state']}")
        return int(res["status"])

    def call_info(self, *, call: int | None = None) -> dict[str, Any]:
        return dict(self._request("call_info", 5, call=call))

    def send_dtmf(
        self,
        digits: str,
        method: Literal["rfc4733", "sip_info"] = "rfc4733",
        *,
        duration_ms: int = 160,
        call: int | None = None,
    ) -> None:
        """Sends digits in the call: RFC 4733 telephone-events (default) or SIP INFO."""
        self._request(
            "send_dtmf", 5, digits=digits, method=method, duration_ms=duration_ms, call=call
        )

    def received_digits(self) -> str:
        """All digits the handset received (any call, either method), in order."""
        return "".join(str(e.data["digit"]) for e in self.events("dtmf"))

    def wait_digits(self, count: int, timeout: float = 10.0) -> str:
        end = time.monotonic() + timeout
        while len(self.received_digits()) < count:
            if time.monotonic() > end:
                raise PjsuaError(
                    f"{self.name}: got digits {self.received_digits()!r}, wanted {count}"
                )
            with self._cond:
                self._cond.wait(0.1)
        return self.received_digits()

    def play_tone(self, freq_hz: int, freq2_hz: int = 0, *, call: int | None = None) -> None:
        """Continuous tone into the call (replaces any other source)."""
        self._request("play_tone", 5, freq_hz=freq_hz, freq2_hz=freq2_hz, call=call)

    def play_wav(self, path: Path | str, *, loop: bool = False, call: int | None = None) -> None:
        """Plays a WAV file (16-bit PCM mono; pjsua resamples) into the call."""
        self._request("play_wav", 5, path=str(path), loop=loop, call=call)

    def stop_audio(self, *, call: int | None = None) -> None:
        self._request("stop_audio", 5, call=call)

    def record(self, path: Path | str, *, call: int | None = None) -> None:
        """Starts recording what the handset receives in the call to a WAV (8 kHz 16-bit)."""
        self._request("record", 5, path=str(path), call=call)

    def stop_record(self, *, call: int | None = None) -> Path:
        """Finalises the recording (also happens by itself when the call ends)."""
        return Path(self._request("stop_record", 5, call=call)["path"])

    def sleep(self, seconds: float) -> None:
        """Lets the handset run for a while (media flows meanwhile either way)."""
        self._request("sleep", seconds, seconds=seconds)


class AsyncPjsuaPhone:
    """The same handset for ``async`` tests: each method runs in a thread, so an in-process
    asyncio SIP service keeps running while the phone waits. Use as ``async with``."""

    def __init__(self, name: str = "phone", **kwargs: Any) -> None:
        self.sync = PjsuaPhone(name, **kwargs)

    async def __aenter__(self) -> AsyncPjsuaPhone:
        await asyncio.to_thread(self.sync.__enter__)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.sync.close)

    @property
    def uri(self) -> str:
        return self.sync.uri

    @property
    def port(self) -> int:
        return self.sync.port

    # Non-blocking accessors stay synchronous (no await needed).
    def events(self, kind: str | None = None) -> list[PhoneEvent]:
        return self.sync.events(kind)

    def received_digits(self) -> str:
        return self.sync.received_digits()

    def log_text(self, tail: int = 20000) -> str:
        return self.sync.log_text(tail)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        fn = getattr(self.sync, name)

        async def run(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(fn, *args, **kwargs)

        return run

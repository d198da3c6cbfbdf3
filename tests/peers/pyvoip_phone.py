"""A second, independent handset: pyVoIP 1.6.8 (pure Python), registering and answering calls.

Why: a volunteer's home handset is not always a well-behaved PJSIP phone. pyVoIP is a small,
quirky SIP stack; if the service works with both, it does not lean on one peer's leniency.

Honest limits of pyVoIP 1.6.8 (read from its source, seen on loopback here):
- UDP only, IPv4 only; one SIP socket bound to ``local_ip:sip_port``.
- It cannot work without a registrar: ``start()`` always REGISTERs (blocking, up to
  ``register_timeout`` s per attempt, 3 failed attempts -> status FAILED), and refreshes
  every 115 s (default_expires 120 - 5).
- Digest auth is RFC 2069 style: it ignores ``qop`` in the challenge, computes the response
  without cnonce/nc, always uses algorithm MD5 and puts ``uri="sip:<server>;transport=UDP"``
  (not the Request-URI, which is ``sip:<server>`` without port). A registrar that insists on
  qop=auth, or checks the uri against the Request-URI, will reject it.
- Every response and every request it sends (180, 200, BYE, ACK) goes to the registrar's
  address ``(server, port)``, whatever the Via/Contact of the INVITE say. So the INVITE must
  come from the registrar address (a B2BUA/registrar on one socket: fine; a separate
  caller: its responses go astray).
- It answers 180 Ringing by itself, then calls our callback after ~1 s; only PCMU/PCMA and
  telephone-event; 8-bit audio internally; no CANCEL handling beyond 200 (the call stays
  "ringing" in its table); no re-INVITE/hold worth the name; BYE from the far end ends the call.
- Its threads are plain (non-daemon) threads polling every 10 ms: always use this class as a
  context manager (or call ``stop()``), or the test process will not exit.
- Unregistering on ``stop()`` waits for the registrar's answer (up to ``register_timeout``);
  pass ``stop(unregister=False)`` when the registrar is already gone.

Use::

    with PyVoipPhone("127.0.0.1", pbx_port, "1002", "secret") as phone:
        phone.start()                        # registers; raises if that fails
        inc = phone.wait_incoming(10)        # the INVITE arrived (pyVoIP already sent 180)
        phone.answer()
        pcm = phone.received_audio()         # 16-bit PCM of what it heard so far
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import warnings
from dataclasses import dataclass
from types import TracebackType
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # pyVoIP imports audioop
    import pyVoIP
    from pyVoIP.VoIP import CallState, PhoneStatus, VoIPCall, VoIPPhone

from tests.helpers.ports import free_port


@dataclass(frozen=True)
class PyVoipIncoming:
    call_id: str
    from_header: str  # raw From value as received
    to_header: str
    call: VoIPCall


class PyVoipPhone:
    def __init__(
        self,
        registrar_host: str,
        registrar_port: int,
        username: str,
        password: str,
        *,
        local_ip: str = "127.0.0.1",
        sip_port: int | None = None,
        rtp_port_low: int | None = None,
        rtp_ports: int = 20,
        register_timeout: float = 5.0,
    ) -> None:
        self.sip_port = sip_port or free_port(local_ip)
        low = rtp_port_low or free_port(local_ip)
        self.phone = VoIPPhone(
            registrar_host,
            registrar_port,
            username,
            password,
            myIP=local_ip,
            callCallback=self._on_call,
            sipPort=self.sip_port,
            rtpPortLow=low,
            rtpPortHigh=low + rtp_ports,
        )
        # pyVoIP passes it to select(), which takes fractions of a second.
        self.phone.sip.register_timeout = register_timeout  # type: ignore[assignment]
        self._incoming: queue.Queue[VoIPCall] = queue.Queue()
        self._digits: list[str] = []
        self.call: VoIPCall | None = None
        self._started = False

    # pyVoIP calls this from its own Timer thread ~1 s after the INVITE; return at once.
    def _on_call(self, call: VoIPCall) -> None:
        self._incoming.put(call)

    def __enter__(self) -> PyVoipPhone:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(unregister=False)

    @property
    def status(self) -> str:
        return str(self.phone.get_status().name)

    def start(self, timeout: float = 15.0) -> None:
        """Binds and REGISTERs; raises AssertionError unless the first attempt succeeds."""
        self._started = True
        before = set(threading.enumerate())
        self.phone.start()
        # pyVoIP's receive loop (a Timer started inside start()); stop() must let it finish
        # before the socket closes, or pyVoIP's own loop trips over the closed socket.
        self._receivers = [
            t for t in set(threading.enumerate()) - before if t.name == "SIP Recieve"
        ]
        end = time.monotonic() + timeout
        while self.phone.get_status() not in (
            PhoneStatus.REGISTERED,
            PhoneStatus.FAILED,
            PhoneStatus.INACTIVE,
        ):
            # A failed attempt (e.g. 403) makes pyVoIP retry quietly; the first one decides.
            if time.monotonic() > end or self.phone.sip.registerFailures > 0:
                break
            time.sleep(0.05)
        if self.phone.get_status() != PhoneStatus.REGISTERED:
            raise AssertionError(f"pyVoIP did not register: status {self.status}")

    def wait_incoming(self, timeout: float = 10.0) -> PyVoipIncoming:
        try:
            call = self._incoming.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"pyVoIP: no incoming call within {timeout}s") from None
        self.call = call
        h: dict[str, Any] = call.request.headers
        return PyVoipIncoming(
            call_id=str(h["Call-ID"]),
            from_header=str(h["From"]["raw"]),
            to_header=str(h["To"]["raw"]),
            call=call,
        )

    def answer(self) -> None:
        assert self.call is not None, "no incoming call (wait_incoming first)"
        self.call.answer()

    def deny(self) -> None:
        """Refuses the ringing call (pyVoIP sends 486 Busy Here)."""
        assert self.call is not None
        self.call.deny()

    def hangup(self) -> None:
        assert self.call is not None
        self.call.hangup()

    @property
    def call_state(self) -> str:
        return "NONE" if self.call is None else str(self.call.state.name)

    def wait_ended(self, timeout: float = 10.0) -> None:
        """Waits until the far end hung up (BYE received)."""
        end = time.monotonic() + timeout
        while self.call is not None and self.call.state != CallState.ENDED:
            if time.monotonic() > end:
                raise AssertionError(f"pyVoIP call still {self.call_state} after {timeout}s")
            time.sleep(0.05)

    def received_audio(self) -> bytes:
        """Everything received in the call so far, as 16-bit LE PCM at 8 kHz."""
        assert self.call is not None and self.call.RTPClients, "no call media"
        raw = self.call.RTPClients[0].pmin.buffer.getvalue()  # 8-bit unsigned (pyVoIP's form)
        out = bytearray()
        for b in raw:
            v = (b - 128) << 8
            out += v.to_bytes(2, "little", signed=True)
        return bytes(out)

    def send_audio(self, pcm16: bytes) -> None:
        """Queues 16-bit LE PCM (8 kHz) to be sent in the call."""
        assert self.call is not None
        data = bytes(
            ((int.from_bytes(pcm16[i : i + 2], "little", signed=True) >> 8) + 128) & 0xFF
            for i in range(0, len(pcm16) - 1, 2)
        )
        self.call.write_audio(data)

    def stop(self, unregister: bool = True) -> None:
        """Hangs up, optionally unregisters, and ends pyVoIP's threads in an order that does
        not pull the socket from under its receive loop."""
        if not self._started:
            return
        self._started = False
        sip = self.phone.sip
        timer = sip.registerThread
        if timer is not None:
            timer.cancel()
        sip.registerThread = None  # so pyVoIP's stop() does not unregister a second time
        for call in list(self.phone.calls.values()):
            with contextlib.suppress(Exception):
                call.hangup()
        if unregister and sip.NSD:
            with contextlib.suppress(Exception):
                sip.deregister()
        sip.NSD = False  # ends the receive loop within ~10 ms
        for t in getattr(self, "_receivers", []):
            t.cancel()  # still in its 1 s start delay: it never starts now
            t.join(timeout=5)
        with contextlib.suppress(Exception):
            sip._close_sockets()
        self.phone._status = PhoneStatus.INACTIVE


__all__ = ["PyVoipIncoming", "PyVoipPhone", "pyVoIP"]

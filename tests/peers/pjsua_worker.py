"""Child process hosting one pjsua2 handset, driven over stdin/stdout JSON lines.

Run only by tests/peers/pjsua_phone.py. pjsua2 owns C threads and global state, so it must not
live inside the pytest/asyncio process; here it runs with ``mainThreadOnly`` and ``threadCnt=0``
so every pjsua2 callback runs in this process's main thread, inside ``libHandleEvents``.

Protocol (one JSON object per line):
  parent -> worker  {"id": 7, "cmd": "register", "args": {...}}
  worker -> parent  {"id": 7, "ok": true, "result": ...} | {"id": 7, "ok": false, "error": "..."}
  worker -> parent  {"event": "call_state", ...}          (unsolicited, any time)

Loopback only: the SIP and RTP transports bind 127.0.0.1 (or the given address); STUN, ICE,
UPnP and contact/Via rewriting are all off. Audio uses the null device (no sound card).
The worker exits on stdin EOF, on the "quit" command, or after ``--max-life`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import pjsua2 as pj
from pjsua_objects import _PROTO, CommandError, WorkerAccount, WorkerCall, emit, event


class Worker:
    def __init__(self, max_life: float) -> None:
        self.ep: pj.Endpoint | None = None
        self.transport_id = -1
        self.transport = "udp"
        self.bind = "127.0.0.1"
        self.port = 0
        self.local_acc: WorkerAccount | None = None
        self.reg_acc: WorkerAccount | None = None
        self.calls: dict[int, WorkerCall] = {}
        self.next_handle = 1
        self.auto_ringing = True
        self.srtp = 0
        self.user = "phone"
        self._rtp = (0, 100)  # first RTP port (0: any free one) and range
        self.deadline = time.monotonic() + max_life
        self.cmds: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.quit = False

    # -- helpers -------------------------------------------------------------------------------

    def add_call(self, call: WorkerCall) -> int:
        handle = self.next_handle
        self.next_handle += 1
        call.handle = handle
        self.calls[handle] = call
        return handle

    def call(self, handle: int | None) -> WorkerCall:
        if handle is None:
            live = [c for c in self.calls.values() if c.state != "DISCONNECTED"]
            if not live:
                raise CommandError("no active call")
            return live[-1]
        if handle not in self.calls:
            raise CommandError(f"unknown call {handle}")
        return self.calls[handle]

    def pump(self, ms: int = 10) -> None:
        assert self.ep is not None
        self.ep.libHandleEvents(ms)

    def pump_until(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > end:
                raise CommandError(f"timeout after {timeout}s waiting for {what}")
            self.pump(10)

    def release_media(self, call: WorkerCall) -> None:
        # Dropping the Python references destroys the ports; a recorder's WAV header is
        # finalised on destruction, so the file is complete once this returns.
        if call.recorder is not None:
            call.recorder = None
            event("record_done", call=call.handle, path=call.record_path)
        call.tone = None
        call.player = None

    # -- commands --------------------------------------------------------------------------------

    def cmd_start(
        self,
        port: int,
        transport: str = "udp",
        bind: str = "127.0.0.1",
        rtp_port: int = 0,
        rtp_port_range: int = 100,
        log_path: str | None = None,
        log_level: int = 4,
        codecs: list[str] | None = None,
        user_agent: str = "helpline-test-pjsua",
        auto_ringing: bool = True,
        user: str = "phone",
        srtp: int = 0,
    ) -> dict[str, Any]:
        if self.ep is not None:
            raise CommandError("already started")
        self.auto_ringing = auto_ringing
        self.srtp = srtp  # pjmedia_srtp_use: 0 disabled, 1 optional, 2 mandatory (SDES)
        self.user = user
        ep = pj.Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.userAgent = user_agent
        cfg.uaConfig.stunServer.clear()
        cfg.uaConfig.enableUpnp = False
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.level = log_level if log_path else 0
        if log_path:
            cfg.logConfig.filename = log_path
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0  # no echo canceller: it would distort test tones
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        ep.libInit(cfg)
        self.ep = ep
        ep.audDevManager().setNullDev()

        tcfg = pj.TransportConfig()
        tcfg.port = port
        tcfg.boundAddress = bind
        tcfg.publicAddress = bind
        kind = {
            "udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP,
            "tls": pj.PJSIP_TRANSPORT_TLS,  # the service's certificate is not verified
        }.get(transport)  # fmt: skip
        if kind is None:
            raise CommandError(f"unsupported transport {transport}")
        self.transport_id = ep.transportCreate(kind, tcfg)
        self.transport, self.bind, self.port = transport, bind, port
        ep.libStart()

        # Only G.711 (+ telephone-event, always on): what the helpline's B2BUA speaks.
        wanted = [c.upper() for c in (codecs or ["PCMU", "PCMA"])]
        for ci in ep.codecEnum2():
            name = ci.codecId.split("/")[0].upper()
            prio = 255 - wanted.index(name) if name in wanted else 0
            ep.codecSetPriority(ci.codecId, prio)

        self._rtp = (rtp_port, rtp_port_range)
        self.local_acc = self.make_account("local", f"sip:{user}@{bind}:{port}", None)
        info = ep.transportGetInfo(self.transport_id)
        return {"local_name": info.localName, "pid": os.getpid()}

    def base_account_config(self, id_uri: str) -> pj.AccountConfig:
        acfg = pj.AccountConfig()
        acfg.idUri = id_uri
        acfg.sipConfig.transportId = self.transport_id
        nat = acfg.natConfig
        nat.iceEnabled = False
        nat.turnEnabled = False
        nat.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
        nat.contactRewriteUse = 0
        nat.viaRewriteUse = 0
        nat.sdpNatRewriteUse = 0
        nat.sipOutboundUse = 0
        nat.udpKaIntervalSec = 0
        rtp_port, rtp_range = self._rtp
        mt = acfg.mediaConfig.transportConfig
        mt.boundAddress = self.bind
        mt.publicAddress = self.bind
        mt.port = rtp_port
        mt.portRange = rtp_range if rtp_port else 0
        acfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE
        acfg.callConfig.prackUse = pj.PJSUA_100REL_NOT_USED
        if self.srtp:
            acfg.mediaConfig.srtpUse = self.srtp
            acfg.mediaConfig.srtpSecureSignaling = 1  # keys only over TLS (the first hop)
            acfg.mediaConfig.srtpOpt.keyings.clear()
            acfg.mediaConfig.srtpOpt.keyings.append(pj.PJMEDIA_SRTP_KEYING_SDES)
        return acfg

    def make_account(self, name: str, id_uri: str, acfg: pj.AccountConfig | None) -> WorkerAccount:
        acc = WorkerAccount(self, name)
        acc.create(acfg or self.base_account_config(id_uri), name == "local")
        return acc

    def cmd_register(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        realm: str = "*",
        expires: int = 300,
        timeout: float = 10.0,
        display: str | None = None,
    ) -> dict[str, Any]:
        if self.ep is None:
            raise CommandError("not started")
        params = f";transport={self.transport}" if self.transport != "udp" else ""
        name = f'"{display}" ' if display else ""
        acfg = self.base_account_config(f"{name}<sip:{username}@{host}:{port}>")
        acfg.regConfig.registrarUri = f"sip:{host}:{port}{params}"
        acfg.regConfig.timeoutSec = expires
        acfg.regConfig.retryIntervalSec = 0  # a test wants the first answer, not retries
        acfg.regConfig.registerOnAdd = True
        acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", realm, username, 0, password))
        if self.reg_acc is not None:
            self.reg_acc.shutdown()
            self.reg_acc = None
        acc = WorkerAccount(self, "registrar")
        acc.create(acfg, True)
        self.reg_acc = acc
        self.pump_until(
            lambda: acc.reg_code is not None and acc.reg_code >= 200,
            timeout,
            "REGISTER final response",
        )
        return {"code": acc.reg_code, "expires": acc.reg_expires}

    def cmd_unregister(self, timeout: float = 10.0) -> dict[str, Any]:
        acc = self.reg_acc
        if acc is None:
            raise CommandError("not registered")
        acc.reg_code = None
        acc.setRegistration(False)
        self.pump_until(
            lambda: acc.reg_code is not None and acc.reg_code >= 200,
            timeout,
            "un-REGISTER final response",
        )
        return {"code": acc.reg_code, "expires": acc.reg_expires}

    def cmd_make_call(
        self,
        uri: str,
        wait: bool = True,
        timeout: float = 15.0,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        acc = self.reg_acc or self.local_acc
        if acc is None:
            raise CommandError("not started")
        call = WorkerCall(self, acc)
        handle = self.add_call(call)
        op = pj.CallOpParam(True)
        for name, value in (headers or {}).items():
            hdr = pj.SipHeader()
            hdr.hName, hdr.hValue = name, value
            op.txOption.headers.append(hdr)
        call.makeCall(uri, op)
        if not wait:
            return {"call": handle, "status": 0}
        self.pump_until(
            lambda: call.state in ("CONFIRMED", "DISCONNECTED"), timeout, "call answer or failure"
        )
        if call.state == "CONFIRMED":
            self.pump_until(lambda: call.media_active, 5.0, "call media")
        return {"call": handle, "status": call.last_status, "state": call.state}

    def cmd_xfer(self, uri: str, call: int | None = None) -> dict[str, Any]:
        """Blind transfer: REFER the call's peer to `uri` (RFC 3515)."""
        c = self.call(call)
        c.xfer(uri, pj.CallOpParam(True))
        return {"call": c.handle}

    def cmd_xfer_replaces(self, dest_call: int, call: int | None = None) -> dict[str, Any]:
        """Attended transfer: REFER the call's peer to `dest_call`'s peer, with Replaces
        naming `dest_call`'s dialog (RFC 3891)."""
        c = self.call(call)
        c.xferReplaces(self.call(dest_call), pj.CallOpParam(True))
        return {"call": c.handle}

    def cmd_answer(
        self, code: int = 200, call: int | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        c = self.call(call)
        op = pj.CallOpParam()
        op.statusCode = code
        c.answer(op)
        if code == 200:
            self.pump_until(
                lambda: c.media_active or c.state == "DISCONNECTED", timeout, "media after answer"
            )
        return {"call": c.handle, "state": c.state}

    def cmd_hangup(
        self, code: int = 0, call: int | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        c = self.call(call)
        if c.state != "DISCONNECTED":
            op = pj.CallOpParam()
            if code:
                op.statusCode = code
            c.hangup(op)
            self.pump_until(lambda: c.state == "DISCONNECTED", timeout, "call to end")
        return {"call": c.handle, "state": c.state, "status": c.last_status}

    def cmd_wait_state(
        self, state: str, call: int | None = None, timeout: float = 10.0
    ) -> dict[str, Any]:
        c = self.call(call) if call is not None else None
        if c is None:
            # The newest call, whatever its state (it may already be DISCONNECTED).
            if not self.calls:
                raise CommandError("no call")
            c = self.calls[max(self.calls)]
        target = c
        self.pump_until(
            lambda: target.state == state or target.state == "DISCONNECTED",
            timeout,
            f"call state {state}",
        )
        return {"call": target.handle, "state": target.state, "status": target.last_status}

    def cmd_send_dtmf(
        self, digits: str, method: str = "rfc4733", duration_ms: int = 160, call: int | None = None
    ) -> dict[str, Any]:
        c = self.call(call)
        prm = pj.CallSendDtmfParam()
        prm.digits = digits
        prm.duration = duration_ms
        prm.method = {
            "rfc4733": pj.PJSUA_DTMF_METHOD_RFC2833,
            "rfc2833": pj.PJSUA_DTMF_METHOD_RFC2833,
            "sip_info": pj.PJSUA_DTMF_METHOD_SIP_INFO,
        }[method]
        c.sendDtmf(prm)
        return {"call": c.handle}

    def cmd_play_tone(
        self, freq_hz: int, freq2_hz: int = 0, volume: int = 0, call: int | None = None
    ) -> dict[str, Any]:
        c = self.call(call)
        self._stop_sources(c)
        tone = pj.ToneGenerator()
        tone.createToneGenerator(8000, 1)
        td = pj.ToneDesc()
        td.freq1 = freq_hz
        td.freq2 = freq2_hz
        td.on_msec = 10000
        td.off_msec = 0
        td.volume = volume
        tones = pj.ToneDescVector()
        tones.append(td)
        tone.play(tones, True)
        tone.startTransmit(c.audio())
        c.tone = tone
        return {"call": c.handle}

    def cmd_play_wav(
        self, path: str, loop: bool = False, call: int | None = None
    ) -> dict[str, Any]:
        c = self.call(call)
        self._stop_sources(c)
        player = pj.AudioMediaPlayer()
        player.createPlayer(path, 0 if loop else pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(c.audio())
        c.player = player
        return {"call": c.handle}

    def cmd_stop_audio(self, call: int | None = None) -> dict[str, Any]:
        c = self.call(call)
        self._stop_sources(c)
        return {"call": c.handle}

    def _stop_sources(self, c: WorkerCall) -> None:
        for src in (c.tone, c.player):
            if src is not None and c.media_active:
                src.stopTransmit(c.getAudioMedia(-1))
        c.tone = None
        c.player = None

    def cmd_record(self, path: str, call: int | None = None) -> dict[str, Any]:
        c = self.call(call)
        if c.recorder is not None:
            raise CommandError("already recording")
        rec = pj.AudioMediaRecorder()
        rec.createRecorder(path)
        c.audio().startTransmit(rec)
        c.recorder, c.record_path = rec, path
        return {"call": c.handle, "path": path}

    def cmd_stop_record(self, call: int | None = None) -> dict[str, Any]:
        c = self.calls[call] if call is not None else self._last_recording()
        path = c.record_path
        if c.recorder is not None:
            if c.media_active and c.state != "DISCONNECTED":
                c.getAudioMedia(-1).stopTransmit(c.recorder)
            c.recorder = None
        return {"call": c.handle, "path": path}

    def _last_recording(self) -> WorkerCall:
        for c in reversed(list(self.calls.values())):
            if c.record_path is not None:
                return c
        raise CommandError("no recording")

    def cmd_call_info(self, call: int | None = None) -> dict[str, Any]:
        c = self.call(call) if call is not None else self.calls[max(self.calls)]
        out: dict[str, Any] = {
            "call": c.handle,
            "state": c.state,
            "status": c.last_status,
            "digits": "".join(c.digits),
            "media_active": c.media_active,
        }
        if c.state != "DISCONNECTED":
            ci = c.getInfo()
            out.update(
                remote_uri=ci.remoteUri,
                local_uri=ci.localUri,
                remote_contact=ci.remoteContact,
                call_id=ci.callIdString,
            )
        return out

    def cmd_ping(self) -> str:
        return "pong"

    def cmd_sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pump(10)

    def cmd_quit(self) -> None:
        self.quit = True

    # -- main loop ---------------------------------------------------------------------------

    def shutdown(self) -> None:
        ep = self.ep
        if ep is None:
            return
        for c in self.calls.values():
            self.release_media(c)
        try:
            ep.hangupAllCalls()
            end = time.monotonic() + 1.0
            while time.monotonic() < end and any(
                c.state not in ("DISCONNECTED", "NULL") for c in self.calls.values()
            ):
                ep.libHandleEvents(10)
        except pj.Error:
            pass
        self.calls.clear()
        for acc in (self.reg_acc, self.local_acc):
            if acc is not None:
                acc.shutdown()
        self.reg_acc = self.local_acc = None
        ep.libDestroy()
        self.ep = None

    def run(self) -> int:
        threading.Thread(target=self._read_stdin, daemon=True).start()
        while not self.quit:
            if time.monotonic() > self.deadline:
                event("fatal", error="max life reached")
                break
            try:
                msg = self.cmds.get_nowait()
            except queue.Empty:
                if self.ep is not None:
                    self.pump(10)
                else:
                    time.sleep(0.01)
                continue
            if msg is None:  # stdin closed: the parent is gone
                break
            self.dispatch(msg)
        self.shutdown()
        return 0

    def dispatch(self, msg: dict[str, Any]) -> None:
        mid = msg.get("id")
        fn = getattr(self, "cmd_" + str(msg.get("cmd")), None)
        if fn is None:
            emit({"id": mid, "ok": False, "error": f"unknown command {msg.get('cmd')}"})
            return
        try:
            result = fn(**msg.get("args", {}))
            emit({"id": mid, "ok": True, "result": result})
        except CommandError as exc:
            emit({"id": mid, "ok": False, "error": str(exc)})
        except pj.Error as exc:
            emit({"id": mid, "ok": False, "error": f"pjsua2: {exc.info()}"})
        except Exception as exc:  # report, keep serving: the parent decides what to do
            emit(
                {
                    "id": mid,
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc(),
                }
            )

    def _read_stdin(self) -> None:
        for line in sys.stdin:
            line = line.strip()
            if line:
                self.cmds.put(json.loads(line))
        self.cmds.put(None)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-life", type=float, default=600.0)
    args = ap.parse_args()
    # Last-resort guard: whatever happens inside pjsua, this process does not outlive its budget.
    killer = threading.Timer(args.max_life + 10, lambda: os._exit(3))
    killer.daemon = True
    killer.start()
    worker = Worker(args.max_life)
    event("ready", pid=os.getpid())
    rc = worker.run()
    event("exit", rc=rc)
    _PROTO.flush()
    os._exit(rc)  # skip interpreter teardown racing pjsua's C threads


if __name__ == "__main__":
    raise SystemExit(main())

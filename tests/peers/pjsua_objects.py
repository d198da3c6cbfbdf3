"""The pjsua2 side of tests/peers/pjsua_worker.py: the JSON channel to the parent, and the
pjsua2 call and account objects whose callbacks report events on it.

Imported only by the worker process (never by pytest): importing it points fd 1 at stderr.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import pjsua2 as pj

if TYPE_CHECKING:
    from pjsua_worker import Worker

# The protocol channel is a private dup of the original stdout; fd 1 is pointed at stderr so
# any stray C-level printing from pjlib can never corrupt the JSON stream.
_PROTO = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)
_PROTO_LOCK = threading.Lock()


def emit(obj: dict[str, Any]) -> None:
    with _PROTO_LOCK:
        _PROTO.write(json.dumps(obj) + "\n")
        _PROTO.flush()


def event(kind: str, **fields: Any) -> None:
    emit({"event": kind, "t": time.monotonic(), **fields})


class CommandError(Exception):
    pass


INV_STATES = {
    pj.PJSIP_INV_STATE_NULL: "NULL",
    pj.PJSIP_INV_STATE_CALLING: "CALLING",
    pj.PJSIP_INV_STATE_INCOMING: "INCOMING",
    pj.PJSIP_INV_STATE_EARLY: "EARLY",
    pj.PJSIP_INV_STATE_CONNECTING: "CONNECTING",
    pj.PJSIP_INV_STATE_CONFIRMED: "CONFIRMED",
    pj.PJSIP_INV_STATE_DISCONNECTED: "DISCONNECTED",
}


class WorkerCall(pj.Call):  # type: ignore[misc]
    """A call plus the bookkeeping the parent asks about (state, media, received digits)."""

    def __init__(self, worker: Worker, acc: pj.Account, call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(acc, call_id)
        self.worker = worker
        self.state = "NULL"
        self.last_status = 0
        self.media_active = False
        self.digits: list[str] = []
        self.handle = -1
        self.tone: pj.ToneGenerator | None = None
        self.player: pj.AudioMediaPlayer | None = None
        self.recorder: pj.AudioMediaRecorder | None = None
        self.record_path: str | None = None

    def audio(self) -> pj.AudioMedia:
        if not self.media_active:
            raise CommandError("call has no active audio media")
        return self.getAudioMedia(-1)

    def onCallState(self, prm: pj.OnCallStateParam) -> None:  # noqa: N802 (pjsua2 API)
        ci = self.getInfo()
        self.state = INV_STATES.get(ci.state, str(ci.state))
        self.last_status = int(ci.lastStatusCode)
        event(
            "call_state",
            call=self.handle,
            state=self.state,
            status=self.last_status,
            reason=ci.lastReason,
        )
        if self.state == "DISCONNECTED":
            self.worker.release_media(self)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:  # noqa: N802
        ci = self.getInfo()
        active = any(
            mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE
            for mi in ci.media
        )
        self.media_active = active
        event("media_state", call=self.handle, active=active)

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:  # noqa: N802
        # how a transfer we asked for (REFER) goes: the REFER's answer, then each NOTIFY
        event("xfer_status", call=self.handle, status=int(prm.statusCode),
              final=bool(prm.finalNotify))  # fmt: skip

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:  # noqa: N802
        method = "rfc4733" if prm.method == pj.PJSUA_DTMF_METHOD_RFC2833 else "sip_info"
        self.digits.append(prm.digit)
        event("dtmf", call=self.handle, digit=prm.digit, method=method)


class WorkerAccount(pj.Account):  # type: ignore[misc]
    def __init__(self, worker: Worker, name: str):
        super().__init__()
        self.worker = worker
        self.name = name
        self.reg_code: int | None = None
        self.reg_expires = -1

    def onRegState(self, prm: pj.OnRegStateParam) -> None:  # noqa: N802
        self.reg_code = int(prm.code)
        self.reg_expires = int(prm.expiration)
        event(
            "reg_state",
            account=self.name,
            code=self.reg_code,
            expires=self.reg_expires,
            reason=prm.reason,
        )

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:  # noqa: N802
        call = WorkerCall(self.worker, self, prm.callId)
        handle = self.worker.add_call(call)
        ci = call.getInfo()
        raw = prm.rdata.wholeMsg
        event(
            "incoming",
            call=handle,
            account=self.name,
            remote_uri=ci.remoteUri,
            local_uri=ci.localUri,
            remote_contact=ci.remoteContact,
            invite=raw,
        )
        if self.worker.auto_ringing:
            op = pj.CallOpParam()
            op.statusCode = 180
            call.answer(op)

"""A registered handset's binding as the registrar holds it, for the registrar's sans-IO tests."""

from __future__ import annotations

from pbx.sip.peer import Peer, TransportKind
from pbx.sip.registrar import Binding
from pbx.sip.uri import SipUri


def binding(user: str, port: int, expires_at: float, host: str = "127.0.0.1") -> Binding:
    """``user``'s handset at host:port over UDP, registered until ``expires_at``."""
    return Binding(
        username=user,
        contact=SipUri(host=host, port=port, user=user),
        source=Peer(TransportKind.UDP, host, port),
        expires_at=expires_at,
        call_id=f"c-{user}-{port}",
        cseq=1,
    )

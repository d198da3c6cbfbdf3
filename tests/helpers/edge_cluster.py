"""Active/standby on loopback as deployed: Kamailio (the shipped config) on 127.0.0.1 in front of
two `helpline serve` processes, node A on 127.0.0.11 and node B on 127.0.0.12, over one
PostgreSQL, with the carrier (sipp) on 127.0.0.4 and volunteers' PJSIP handsets on the handsets'
address. Used by tests/test_failover.py and bench/bench_failover.py."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.polling import until
from tests.helpers.served import Served
from tests.helpers.service import HANDSET_HOST, free_port
from tests.helpers.volunteers import PASSWORD
from tests.peers.kamailio import Kamailio
from tests.peers.pjsua_phone import AsyncPjsuaPhone, PhoneEvent
from tests.peers.sipp import SippProcess, start_sipp

EDGE_HOST = "127.0.0.1"
NODE_A, NODE_B = "127.0.0.11", "127.0.0.12"
CARRIER_HOST = "127.0.0.4"


def node(tmp: Path, name: str, host: str, plan: Path, pg_url: str) -> Served:
    (tmp / name).mkdir(parents=True, exist_ok=True)
    env = {
        "HELPLINE_VOLUNTEER_WHISPER": "", "HELPLINE_HA_LEASE": "true",
        "HELPLINE_NODE_NAME": name, "HELPLINE_EDGE_PROXIES": f"{EDGE_HOST}/32",
        "HELPLINE_TRUNK_SOURCES": f"{CARRIER_HOST}/32",
    }  # fmt: skip
    return Served(tmp / name / "state", plan, pg_url, sip_port=free_port(host), host=host, env=env)


def logged(served: Served, event: str, run: int | None = None) -> list[dict[str, Any]]:
    try:
        return [e for e in served.events(run) if e["event"] == event]
    except OSError:
        return []


@dataclass
class Cluster:
    a: Served
    b: Served
    edge: Kamailio
    phones: list[AsyncPjsuaPhone] = field(default_factory=list)

    @classmethod
    def make(cls, tmp: Path, plan: Path, pg_url: str) -> Cluster:
        a = node(tmp, "a", NODE_A, plan, pg_url)
        b = node(tmp, "b", NODE_B, plan, pg_url)
        edge = Kamailio(
            [(NODE_A, a.sip_port), (NODE_B, b.sip_port)], trunk_nets=[f"{CARRIER_HOST}/32"]
        )
        return cls(a, b, edge)

    async def start(self) -> None:
        """A first (it takes the lease), then B (standby), then Kamailio."""
        self.a.start()
        await until(lambda: self.a.ready() == 200, timeout=60)
        self.b.start()
        await until(lambda: bool(logged(self.b, "service_started")), timeout=60)
        await until(lambda: self.b.ready() == 503, timeout=10)  # started: standby
        await asyncio.to_thread(self.edge.start)

    def stop(self) -> None:
        self.edge.close()
        self.a.stop()
        self.b.stop()

    def describe(self) -> str:
        return "\n".join(
            [f"--- node a ---\n{self.a.describe()}", f"--- node b ---\n{self.b.describe()}",
             self.edge.describe()]
        )  # fmt: skip

    async def on_shift(self, phone: AsyncPjsuaPhone, user: str) -> None:
        """The handset registers through Kamailio and the volunteer dials *1 there."""
        await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
        assert await phone.register(EDGE_HOST, self.edge.port, user, PASSWORD) == 200
        assert await phone.make_call(f"sip:*1@{self.edge.target}") == 200
        assert await phone.wait_disconnected(timeout=20) == 200
        self.phones.append(phone)

    def call(self, bye_within_ms: int = 60000) -> SippProcess:
        """A carrier's call through Kamailio: presses 1 (Dutch), then waits for the BYE."""
        return start_sipp(
            "uac_call_key_wait_bye", self.edge.target, local_ip=CARRIER_HOST,
            service="09000767", keys={"bye_within_ms": str(bye_within_ms)},
            timeout_s=bye_within_ms / 1000 + 30,
        )  # fmt: skip

    async def rung(
        self, timeout: float, caller: SippProcess | None = None
    ) -> AsyncPjsuaPhone | None:
        """The handset that gets the next new INVITE within `timeout` s; None if none did, or
        if `caller` ended first (refused: no node took the call)."""
        counts = {id(p): len(p.events("incoming")) for p in self.phones}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.phones:
                if len(p.events("incoming")) > counts[id(p)]:
                    return p
            if caller is not None and caller.proc.poll() is not None:
                return None
            await asyncio.sleep(0.02)
        return None


def most_calls_at_once(events: list[PhoneEvent]) -> int:
    """From a handset's own events: the most calls it had up (ringing or talking) at once."""
    live: set[int] = set()
    most = 0
    for e in events:
        handle = e.data.get("call")
        if e.kind == "incoming" or (e.kind == "call_state" and e.data.get("state") == "CALLING"):
            live.add(int(handle))
        elif e.kind == "call_state" and e.data.get("state") == "DISCONNECTED":
            live.discard(int(handle))
        most = max(most, len(live))
    return most

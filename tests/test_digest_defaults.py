"""Digest defaults that work out of the box: baresip 1.0 (Debian 12), which rejects a whole
challenge when one algorithm is unknown, registers with the service's default settings; the
algorithm each handset authenticated with is recorded and shown by `helpline volunteers list`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time

from pbx.db.volunteers import VolunteerRepository
from tests.helpers.ports import free_port
from tests.helpers.served import HELPLINE
from tests.helpers.service import HANDSET_HOST, MakeHelpline, Running
from tests.peers.baresip import Baresip
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.softphone import SipAccount

PASSWORD = "correct-horse-battery"


async def test_baresip_registers_with_the_default_digest_settings(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline() as helpline:  # digest settings: the service's defaults
        await helpline.add_volunteer("bas", PASSWORD)
        account = SipAccount("bas", PASSWORD, helpline.host, helpline.port, "udp")
        registrar = helpline.service.registrar
        async with Baresip(account, bind=HANDSET_HOST, tone_hz=400) as phone:
            await phone.wait_registered(timeout=15)
            [binding] = registrar.contacts("bas", time.time())
            assert binding.source.host == HANDSET_HOST
            assert binding.algorithm == "MD5"
            assert "baresip" in (binding.user_agent or "").lower()
            # what the volunteer list shows for this handset (the registrations written behind)
            writer = helpline.service.writer
            assert writer is not None and await writer.flush(10)
            listed = await list_volunteers(helpline)
        assert listed.returncode == 0, listed.stderr
        [doc] = [json.loads(line) for line in listed.stdout.splitlines()]
        assert doc["digest"] is None  # the service default
        [handset] = doc["handsets"]
        assert handset["algorithm"] == "MD5" and "baresip" in handset["user_agent"].lower()


async def list_volunteers(helpline: Running) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [HELPLINE, "volunteers", "list", "--json",
         "--database-url", str(helpline.settings.database_url)],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")},
    )  # fmt: skip


async def test_a_volunteer_set_to_sha256_is_challenged_with_it_alone(
    make_helpline: MakeHelpline,
) -> None:
    async with make_helpline() as helpline:
        await helpline.add_volunteer("pia", PASSWORD)
        await helpline.add_volunteer("mo", PASSWORD)
        assert helpline.service.db is not None
        await VolunteerRepository(helpline.service.db.pool).set_digest("pia", "SHA-256")
        await helpline.service.reload_credentials()
        async with AsyncPjsuaPhone("pia") as pia, AsyncPjsuaPhone("mo") as mo:
            for phone, user in ((pia, "pia"), (mo, "mo")):
                await phone.start(free_port(HANDSET_HOST), bind=HANDSET_HOST)
                assert await phone.register(helpline.host, helpline.port, user, PASSWORD) == 200
            now = time.time()
            registrar = helpline.service.registrar
            assert [b.algorithm for b in registrar.contacts("pia", now)] == ["SHA-256"]
            assert [b.algorithm for b in registrar.contacts("mo", now)] == ["MD5"]
            challenges = [
                line for line in pia.log_text().splitlines() if line.startswith("WWW-Authenticate:")
            ]
            assert challenges and all("algorithm=SHA-256" in c for c in challenges), challenges

"""Digest defaults that work out of the box: baresip 1.0 (Debian 12), which rejects a whole
challenge when one algorithm is unknown, registers with the service's default settings; the
algorithm each handset authenticated with is recorded and shown by `helpline volunteers list`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from pbx.db.volunteers import VolunteerRepository
from tests.conftest import MakeHelpline
from tests.peers.pjsua_phone import AsyncPjsuaPhone
from tests.peers.sipp import find_free_port
from tests.polling import until
from tests.service_fixture import HANDSET_HOST, Running, free_port
from tests.test_db_cli import HELPLINE

PASSWORD = "correct-horse-battery"
BARESIP = shutil.which("baresip")  # installed by scripts/bootstrap.sh: missing fails the test


def baresip_config(directory: Path, helpline: Running, user: str, password: str) -> Path:
    """A headless baresip (PEERS.md) that registers `user` from HANDSET_HOST over UDP."""
    directory.mkdir(parents=True, exist_ok=True)
    sip_port, rtp = free_port(HANDSET_HOST), free_port(HANDSET_HOST)
    (directory / "accounts").write_text(
        f"<sip:{user}@{helpline.host}:{helpline.port}>;auth_pass={password};regint=60\n"
    )
    (directory / "config").write_text(
        "\n".join(
            [
                f"sip_listen {HANDSET_HOST}:{sip_port}",
                f"rtp_ports {rtp}-{rtp + 9}",
                "audio_player aufile,/dev/null",
                "audio_source aufile,/dev/null",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module_tmp uuid.so",
                "module_tmp account.so",
                "",
            ]
        )
    )
    return directory


async def test_baresip_registers_with_the_default_digest_settings(
    make_helpline: MakeHelpline, tmp_path: Path
) -> None:
    async with make_helpline() as helpline:  # digest settings: the service's defaults
        await helpline.add_volunteer("bas", PASSWORD)
        config = baresip_config(tmp_path / "baresip", helpline, "bas", PASSWORD)
        assert BARESIP is not None, "baresip is not installed (scripts/bootstrap.sh)"
        phone = subprocess.Popen(
            [BARESIP, "-f", str(config), "-t", "30"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        registrar = helpline.service.registrar
        try:
            await until(lambda: bool(registrar.contacts("bas", time.time())), timeout=15)
            [binding] = registrar.contacts("bas", time.time())
            assert binding.source.host == HANDSET_HOST
            assert binding.algorithm == "MD5"
            assert "baresip" in (binding.user_agent or "").lower()
            # what the volunteer list shows for this handset (the registrations written behind)
            writer = helpline.service.writer
            assert writer is not None and await writer.flush(10)
            listed = await list_volunteers(helpline)
        finally:
            phone.terminate()  # it unregisters on the way out
            await asyncio.to_thread(phone.communicate, timeout=10)
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
                await phone.start(find_free_port(HANDSET_HOST), bind=HANDSET_HOST)
                assert await phone.register(helpline.host, helpline.port, user, PASSWORD) == 200
            now = time.time()
            registrar = helpline.service.registrar
            assert [b.algorithm for b in registrar.contacts("pia", now)] == ["SHA-256"]
            assert [b.algorithm for b in registrar.contacts("mo", now)] == ["MD5"]
            challenges = [
                line for line in pia.log_text().splitlines() if line.startswith("WWW-Authenticate:")
            ]
            assert challenges and all("algorithm=SHA-256" in c for c in challenges), challenges

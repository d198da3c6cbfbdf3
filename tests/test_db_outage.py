"""A database outage loses neither calls nor records: the service runs on memory, writes later."""

from __future__ import annotations

import asyncio

import asyncpg

from pbx.db.embedded import start_embedded
from tests.helpers.pg_state import pg_state_dir
from tests.helpers.raw_handset import RawHandset
from tests.helpers.service import HANDSET_HOST, running_service


async def test_service_starts_and_registers_handsets_while_the_database_is_down(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pg_state_dir() as pg_dir:
        server = start_embedded(pg_dir)
        url = server.url
        state = tmp_path / "state"
        async with running_service(state, url, digest_algorithms=["MD5"]) as first:
            await first.add_volunteer("mark", "pass-word-vwx")  # snapshot of credentials written
        server.stop()
        try:
            # the database is down: the service still starts, from the credentials snapshot
            async with running_service(state, url, digest_algorithms=["MD5"]) as second:
                assert second.service.db is None
                # what shift login needs (languages, PIN hash) came back from its snapshot too
                assert second.service.profiles["mark"].languages == ("nl",)
                handset = RawHandset(HANDSET_HOST)
                try:
                    final = await asyncio.to_thread(
                        handset.register, (second.host, second.port), "mark", "pass-word-vwx",
                        contact_port=handset.port,
                    )  # fmt: skip
                finally:
                    handset.close()
                assert final.startswith("SIP/2.0 200"), final
                assert second.service.writer is not None
                assert second.service.writer.pending >= 2  # binding + event, waiting
                server = start_embedded(pg_dir)  # the database comes back
                assert await second.service.writer.flush(30)
            conn = await asyncpg.connect(server.url)
            try:
                bindings = await conn.fetchval(
                    "select count(*) from registrations where aor='mark'"
                )
                events = await conn.fetchval(
                    "select count(*) from events where kind='registration.added'"
                )
            finally:
                await conn.close()
            assert bindings == 1 and events == 1
        finally:
            server.stop()

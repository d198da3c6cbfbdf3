"""What `helpline demo` tells the user to open: the wallboard only when it is listening.

With the wallboard's port held by another program the service runs on without it (the phones
matter more); the demo must then say so and point at the metrics instead of printing an address
that answers nobody (or somebody else)."""

from __future__ import annotations

import socket

import aiohttp

from ivr.loader import DEFAULT_PLAN
from pbx.commands.demo import wallboard_address
from tests.helpers.ivr_helpline import ivr_helpline
from tests.helpers.service import MakeHelpline, free_port


async def test_the_demo_names_the_wallboard_only_when_it_listens(
    make_helpline: MakeHelpline,
) -> None:
    port = free_port()
    async with ivr_helpline(make_helpline, DEFAULT_PLAN, web_port=port) as helpline:
        said = wallboard_address(helpline.settings, helpline.service.web)
        assert said == f"open the wallboard at http://127.0.0.1:{port}/wallboard"
        async with aiohttp.ClientSession() as session, session.get(said.split()[-1]) as page:
            assert page.status == 200 and "wallboard" in (await page.text()).lower()


async def test_a_taken_wallboard_port_is_said_with_the_metrics_address_instead(
    make_helpline: MakeHelpline,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:  # another program's
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        metrics = free_port()
        async with ivr_helpline(
            make_helpline, DEFAULT_PLAN, web_port=taken, metrics_port=metrics
        ) as helpline:
            said = wallboard_address(helpline.settings, helpline.service.web)
            assert said == (
                f"no wallboard (port {taken} could not be bound, see the log); "
                f"metrics at http://127.0.0.1:{metrics}/metrics"
            )
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{metrics}/metrics") as page,
            ):
                assert page.status == 200 and "helpline_" in await page.text()

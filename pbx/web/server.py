"""The web server: aiohttp in the service's own event loop; the wallboard and its event stream.

A failure to bind is logged and the service runs on without it: the phones matter more than
the screens. Streams and requests are bounded (MAX_STREAMS, client_max_size).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from importlib import resources
from typing import Any

import structlog
from aiohttp import web

from pbx.web.board import snapshot
from pbx.web.console import Console
from pbx.web.tally import DayTally
from queues.dispatcher import Dispatcher
from queues.roster import Roster

log = structlog.get_logger("pbx.web")

MAX_STREAMS = 64  # wallboards open at once
PUSH_INTERVAL = 0.25  # seconds between looks at the state: a change is on screen within a second
KEEPALIVE = 15.0  # seconds between comments on an idle stream (proxies close silent ones)
STATIC = {
    "wallboard.js": "text/javascript",
    "wallboard.css": "text/css",
    "console.css": "text/css",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class WebServer:
    def __init__(
        self,
        host: str,
        port: int | None,
        *,
        roster: Roster,
        dispatcher: Dispatcher,
        tally: DayTally,
        console: Console,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port  # None: off; 0: any free port (tests), read back after start
        self.roster = roster
        self.dispatcher = dispatcher
        self.tally = tally
        self.console = console
        self.tls = tls
        self._runner: web.AppRunner | None = None
        self._streams = 0
        self._closing = False  # streams end at their next look, so that stop does not wait

    @property
    def serving(self) -> bool:
        """Started and listening (a port that could not be bound leaves it off)."""
        return self._runner is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024, middlewares=[_security_headers])
        app.router.add_get("/", _to_wallboard)
        app.router.add_get("/wallboard", self._wallboard_page)
        app.router.add_get("/api/wallboard", self._wallboard_json)
        app.router.add_get("/api/wallboard/events", self._wallboard_events)
        app.router.add_get("/static/{name}", _static)
        self.console.add_routes(app.router)
        return app

    async def start(self) -> None:
        if self.port is None:
            return
        runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.tls, backlog=64)
        try:
            await site.start()
        except OSError as exc:
            log.error("web_not_started", host=self.host, port=self.port, error=str(exc))
            await runner.cleanup()
            return
        self._runner = runner
        server = getattr(site, "_server", None)
        if self.port == 0 and server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        log.info("web_started", url=self.url)

    async def stop(self) -> None:
        self._closing = True
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- the wallboard -----------------------------------------------------------------------
    def board(self) -> dict[str, Any]:
        return snapshot(self.roster, self.dispatcher, self.tally)

    async def _wallboard_page(self, request: web.Request) -> web.Response:
        return web.Response(text=_read("wallboard.html"), content_type="text/html")

    async def _wallboard_json(self, request: web.Request) -> web.Response:
        return web.json_response(self.board())

    async def _wallboard_events(self, request: web.Request) -> web.StreamResponse:
        if self._streams >= MAX_STREAMS:
            raise web.HTTPServiceUnavailable(text="too many wallboards open")
        self._streams += 1
        try:
            stream = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-store",
                    "X-Accel-Buffering": "no",
                }
            )
            await stream.prepare(request)
            last, quiet = "", 0.0
            while not self._closing:
                data = json.dumps(self.board(), separators=(",", ":"))
                if data != last:
                    await stream.write(f"data: {data}\n\n".encode())
                    last, quiet = data, 0.0
                elif quiet >= KEEPALIVE:
                    await stream.write(b": keepalive\n\n")
                    quiet = 0.0
                await asyncio.sleep(PUSH_INTERVAL)
                quiet += PUSH_INTERVAL
        except ConnectionResetError:  # the wallboard went away
            pass
        finally:
            self._streams -= 1
        return stream


@web.middleware
async def _security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response


async def _to_wallboard(request: web.Request) -> web.Response:
    raise web.HTTPFound("/wallboard")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:  # a closed set: no path ever reaches the file system
        raise web.HTTPNotFound()
    return web.Response(text=_read(name), content_type=STATIC[name])


def _read(name: str) -> str:
    return resources.files("pbx.web").joinpath("static", name).read_text(encoding="utf-8")

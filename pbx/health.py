"""The metrics HTTP server, with a readiness endpoint beside Prometheus' /metrics.

`GET /ready` answers 200 "serving" while the service takes calls and 503 "starting" or
"draining" otherwise, for a load balancer or a SIP proxy deciding where to send new calls.
Every other path is Prometheus' exposition, unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler


def start_health_server(
    port: int, addr: str, registry: CollectorRegistry, readiness: Callable[[], tuple[bool, str]]
) -> WSGIServer:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/ready":
            ok, state = readiness()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
            return [f"{state}\n".encode()]
        result: Iterable[bytes] = metrics(environ, start_response)
        return result

    httpd = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
    threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True).start()
    return httpd

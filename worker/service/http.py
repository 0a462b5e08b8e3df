"""The worker's HTTP port: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` (200 or 503
with a JSON body saying why, from :class:`~worker.service.health.Health`), and at ``/`` a page
saying where to look next (the dashboard, the alert rules, ``streamfuse report``). Every other
path answers the metrics, as prometheus_client's own server does."""

from __future__ import annotations

import html
import json
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from worker.service.health import Health, Verdict

__all__ = ["landing_page", "serve_metrics"]

StartResponse = Callable[..., Any]


def landing_page(host: str, port: int) -> str:
    """The page at ``/``: where this worker's metrics go and how to watch them."""
    metrics = html.escape(f"http://{host}:{port}/metrics")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamfuse worker</title></head>
<body style="font-family:sans-serif;max-width:46em;margin:24px">
<h1>streamfuse worker</h1>
<ul>
<li><a href="/metrics">/metrics</a>: this worker's Prometheus metrics
(<code>streamfuse_*</code>).</li>
<li><a href="/healthz">/healthz</a> (the loop turns) and <a href="/readyz">/readyz</a>
(models loaded, connected, partitions assigned): 200 or 503, with the reason in JSON.</li>
<li>Dashboard: a Prometheus scraping <code>{metrics}</code> with
<code>deploy/prometheus-local.yml</code> and the flags
<code>--web.console.templates=deploy/prometheus/consoles
--web.console.libraries=deploy/prometheus/console_libraries</code> serves it at
<code>/consoles/streamfuse.html</code>; <code>dev/demo</code> runs one:
<a href="http://127.0.0.1:9090/consoles/streamfuse.html">http://127.0.0.1:9090/consoles/streamfuse.html</a>.
With Docker, <code>docker compose up</code> adds Grafana on
<a href="http://127.0.0.1:3000">http://127.0.0.1:3000</a>.</li>
<li>Alert rules: <code>deploy/prometheus/alerts.yml</code>
(firing ones at <a href="http://127.0.0.1:9090/alerts">http://127.0.0.1:9090/alerts</a>
in the demo).</li>
<li>Without Prometheus: <code>streamfuse report --url {metrics} --duration 60
--out report.html</code> samples this port and writes a page of charts.</li>
</ul>
</body></html>
"""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_metrics(
    registry: CollectorRegistry, host: str, port: int, health: Health | None = None
) -> WSGIServer:
    """Serve ``registry`` on ``host:port`` (0: any free port) from a daemon thread, and
    ``health``'s verdicts at ``/healthz`` and ``/readyz`` when given."""
    metrics = make_wsgi_app(registry)
    page: list[bytes] = []
    verdicts: dict[str, Callable[[], Verdict]] = {}
    if health is not None:
        verdicts = {"/healthz": health.liveness, "/readyz": health.readiness}

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in verdicts:
            verdict = verdicts[path]()
            body = json.dumps(verdict.body).encode()
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ]
            start_response(
                f"{verdict.status} {'OK' if verdict.ok else 'Service Unavailable'}", headers
            )
            return [body]
        if path in ("", "/"):
            headers = [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(page[0]))),
            ]
            start_response("200 OK", headers)
            return page
        answer: Iterable[bytes] = metrics(environ, start_response)
        return answer

    server_class = _Server6 if ":" in host else _Server  # an IPv6 address has colons
    server = make_server(host, port, app, server_class, handler_class=_Quiet)
    page.append(landing_page(host, server.server_address[1]).encode())
    threading.Thread(target=server.serve_forever, name="streamfuse-metrics", daemon=True).start()
    return server

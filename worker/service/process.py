"""Run a worker process: metrics and health endpoints, signal handlers, the loop; exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry

from worker.config import Settings
from worker.errors import DeliveryError
from worker.service.health import Health, stall_bound_s
from worker.service.http import serve_metrics
from worker.service.worker import Worker

__all__ = ["limit_threads", "open_port", "serve"]

log = logging.getLogger("streamfuse.server")


def limit_threads(n: int) -> None:
    """Cap the threads each model uses (torch intra-op, OpenMP, BLAS); 0: library defaults."""
    if n <= 0:
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n)


def open_port(settings: Settings, registry: CollectorRegistry) -> tuple[Health, WSGIServer | None]:
    """The worker's health, and the server answering ``/metrics``, ``/healthz`` and ``/readyz``
    with it (None when ``metrics.enabled`` is false); opened before the models load, so that
    probes hear "loading the models" rather than nothing."""
    health = Health(stall_bound_s(settings))
    if not settings.metrics.enabled:
        return health, None
    server = serve_metrics(registry, settings.metrics.host, settings.metrics.port, health)
    log.info("metrics on http://%s:%d/metrics", settings.metrics.host, server.server_address[1])
    return health, server


def serve(settings: Settings, stopped_early: Callable[[], bool] | None = None) -> int:
    """Serve ``/metrics`` and the health endpoints, build the worker, run until SIGTERM/SIGINT.
    Returns the exit code.

    ``stopped_early``: whether a stop signal came before the worker's own handlers were
    installed (while it was loading); then it exits 0 without starting.
    """
    limit_threads(settings.runtime.model_threads)
    if settings.runtime.gil_switch_ms > 0:
        sys.setswitchinterval(settings.runtime.gil_switch_ms / 1000)
    registry = CollectorRegistry()
    health, server = open_port(settings, registry)
    try:
        worker = Worker(settings, registry, freeze_gc=settings.runtime.gc_freeze, health=health)
    except BaseException:
        _close(server)
        raise
    worker.install_signal_handlers()
    if stopped_early is not None and stopped_early():
        log.info("stopped during start-up")
        worker.pipeline.close()
        _close(server)
        return 0
    try:
        worker.connect()
        worker.run()
    except DeliveryError as exc:
        log.error("%s; exiting", exc)
        return 1
    finally:
        _close(server)
    return 0


def _close(server: WSGIServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()

"""Run a worker process: metrics endpoint, signal handlers, the loop; exit codes."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, start_http_server

from worker.config import Settings
from worker.errors import DeliveryError
from worker.runner import Worker

__all__ = ["limit_threads", "serve"]

log = logging.getLogger("streamfuse.server")


def limit_threads(n: int) -> None:
    """Cap the threads each model uses (torch intra-op, OpenMP, BLAS); 0: library defaults."""
    if n <= 0:
        return
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n)


def serve(settings: Settings) -> int:
    """Build the worker, serve ``/metrics``, run until SIGTERM/SIGINT. Returns the exit code."""
    limit_threads(settings.runtime.model_threads)
    registry = CollectorRegistry()
    worker = Worker(settings, registry)
    worker.install_signal_handlers()
    server = None
    if settings.metrics.enabled:
        server, _ = start_http_server(
            settings.metrics.port, addr=settings.metrics.host, registry=registry
        )
        log.info("metrics on http://%s:%d/metrics", settings.metrics.host, server.server_address[1])
    try:
        worker.connect()
        worker.run()
    except DeliveryError as exc:
        log.error("%s", exc)
        return 1
    finally:
        if server is not None:
            server.shutdown()
    return 0

"""Run a worker process: metrics endpoint, signal handlers, the loop; exit codes."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from worker.config import Settings
from worker.errors import DeliveryError
from worker.service.http import serve_metrics
from worker.service.worker import Worker

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


def serve(settings: Settings, stopped_early: Callable[[], bool] | None = None) -> int:
    """Build the worker, serve ``/metrics``, run until SIGTERM/SIGINT. Returns the exit code.

    ``stopped_early``: whether a stop signal came before the worker's own handlers were
    installed (while it was loading); then it exits 0 without starting.
    """
    limit_threads(settings.runtime.model_threads)
    if settings.runtime.gil_switch_ms > 0:
        sys.setswitchinterval(settings.runtime.gil_switch_ms / 1000)
    registry = CollectorRegistry()
    worker = Worker(settings, registry, freeze_gc=settings.runtime.gc_freeze)
    worker.install_signal_handlers()
    if stopped_early is not None and stopped_early():
        log.info("stopped during start-up")
        worker.pipeline.close()
        return 0
    server = None
    if settings.metrics.enabled:
        server = serve_metrics(registry, settings.metrics.host, settings.metrics.port)
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

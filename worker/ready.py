"""What a worker does once it is ready, before its first task: hand the GIL over
sooner (``NOTIFYQ_WORKER_SWITCH_INTERVAL_MS``), serve its metrics,
build its runtime and HTTP pools, so no admitted call waits on start-up work, and watch
the store, so that while it is away the worker logs one WARNING and, when it is back,
one INFO — not Celery's traceback for every task that met it (observe/outage.py).

It sits above the tasks (it builds their runtime), so the app loads it with them
(worker/app.py ``WORKER_MODULES``) instead of importing it.
"""

from __future__ import annotations

import logging
import sys

from celery.signals import worker_ready
from prometheus_client import REGISTRY, start_http_server

from config.settings import get_settings
from observe.outage import Outage, quiet_on_root
from store.availability import probe_store, store_away
from tasks.gauges import RedisStateCollector, prime
from tasks.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)


@worker_ready.connect
def _on_ready(**_: object) -> None:
    settings = get_settings()
    sys.setswitchinterval(settings.worker_switch_interval_ms / 1000)
    runtime = get_runtime()
    serve_worker_metrics(settings.worker_metrics_port, settings.worker_metrics_host, runtime)
    watch_the_store(runtime)
    runtime.transport.warm()


def watch_the_store(runtime: Runtime) -> Outage:
    """This process's watch on the store, fed by every log record that carries an error
    saying the store is away."""
    store = Outage("the store", lambda: probe_store(runtime.db), logger=log)
    quiet_on_root([(store, store_away)])
    return store


def serve_worker_metrics(
    port: int | None, host: str = "127.0.0.1", runtime: Runtime | None = None
) -> int | None:
    """Expose this worker process's counters (and, given its runtime, the shared Redis
    state) on ``host:port``; port 0 picks a free one. Loopback unless the deployment
    says otherwise (NOTIFYQ_WORKER_METRICS_HOST): the endpoint has no login. Returns the
    port."""
    if port is None:
        return None
    prime()
    if runtime is not None:
        REGISTRY.register(RedisStateCollector(runtime))
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("worker metrics not served on port %s: %s", port, exc)
        return None
    bound = server.server_port
    log.info("worker metrics on http://%s:%s/metrics", host, bound)
    return bound

"""The parts one process works with, built once from the settings (after any fork).

This is the composition root: it wires the store, Redis, the scheduler parts and the
provider clients together and hands them to the tasks; none of those parts knows the
others.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from celery import Celery
from redis import Redis

from config.settings import ProviderPolicy, Settings, get_settings
from providers import registry
from providers.base import Provider
from providers.http import HttpSettings, Transport
from scheduler.caps import CapLimiter
from scheduler.caps_floor import CapFloor
from scheduler.circuit import CircuitBreaker
from scheduler.claims import Claims
from scheduler.clock import Clock
from scheduler.connect import redis_client
from scheduler.deferred import DeferredSet
from scheduler.rates import RateLimiter
from store import Database, NotificationStore, ReceiptStore
from store.calls import CallHistory
from store.migrate import ensure_schema
from tasks.budget import CallBudget
from worker.app import celery as env_celery
from worker.app import make_celery


@dataclass
class Runtime:
    settings: Settings
    db: Database
    notifications: NotificationStore
    receipts: ReceiptStore
    redis: Redis
    caps: CapLimiter
    rates: RateLimiter
    deferred: DeferredSet
    circuit: CircuitBreaker
    providers: dict[str, Provider]
    policies: dict[str, ProviderPolicy]
    transport: Transport
    #: Redis's time (plus the tests' offset when ``clock_control`` is on)
    clock: Clock
    #: one copy of a dispatch per row version gets past admission (scheduler/claims.py)
    claims: Claims
    #: calls this process has admitted and not yet finished (tasks/budget.py)
    call_budget: CallBudget
    #: the producer side of the Celery app, bound to these settings' broker
    celery: Celery

    @classmethod
    def build(cls, settings: Settings, celery: Celery | None = None) -> Runtime:
        """``celery``: the app these settings configure, when there is one already (the
        process's own, from the environment); else a producer app is made for them."""
        ensure_schema(settings.database_url)
        db = Database(settings.database_url, pool_size=settings.db_pool_size)
        notifications = NotificationStore(db)
        connection = {
            "max_connections": max(64, settings.worker_concurrency + 16),
            "health_check_interval": 30,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
        }
        client = redis_client(settings.redis_client_url, **connection)
        providers = registry.build_all(settings)
        clock = Clock(client, control=settings.clock_control)
        return cls(
            settings=settings,
            db=db,
            notifications=notifications,
            receipts=ReceiptStore(db, notifications),
            redis=client,
            caps=CapLimiter(
                redis_client(settings.caps_redis_url, **connection)
                if settings.caps_redis_url
                else client,
                margin=settings.cap_margin,
                clock=clock,
                # when the caps' Redis may have lost history: the ledger's calls
                floor=CapFloor(frozenset(registry.names()), CallHistory(db).recent),
            ),
            rates=RateLimiter(client),
            deferred=DeferredSet(client, clock=clock),
            circuit=CircuitBreaker(client, cooldown=settings.circuit_cooldown),
            providers=providers,
            policies=settings.policies(),
            transport=Transport(
                HttpSettings(
                    connect_timeout=settings.http_connect_timeout,
                    read_timeout=settings.http_read_timeout,
                    write_timeout=settings.http_write_timeout,
                    pool_timeout=settings.http_pool_timeout,
                    max_connections=settings.http_max_connections,
                    bulk_share=settings.bulk_share,
                )
            ),
            clock=clock,
            claims=Claims(client),
            call_budget=CallBudget(settings.dispatch_in_flight, bulk_share=settings.bulk_share),
            celery=celery or make_celery(settings),
        )

    def redis_now(self) -> float:
        """Now, on the one clock every worker agrees on (see scheduler/clock.py)."""
        return self.clock.now()

    def close(self) -> None:
        self.transport.close()
        self.redis.close()
        self.db.dispose()


_lock = threading.Lock()
_current: Runtime | None = None
_pid = 0


def get_runtime() -> Runtime:
    global _current, _pid
    with _lock:
        if _current is None or _pid != os.getpid():
            _current, _pid = Runtime.build(get_settings(), env_celery), os.getpid()
        return _current


def set_runtime(runtime: Runtime | None) -> None:
    """For embedding (tests, the demo): use this runtime instead of one from the env."""
    global _current, _pid
    with _lock:
        _current, _pid = runtime, os.getpid()

"""Fixtures that start real services: Redis (private, free port), the store (SQLite, and
PostgreSQL when NOTIFYQ_TEST_POSTGRES_URL is set), and notifyq's own processes."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from config.settings import Settings
from harness.signals import install_sigterm_as_interrupt
from scheduler.clock import OFFSET_KEY
from store.migrate import upgrade
from store.schema import Base
from tasks.runtime import Runtime
from tests.services import (
    NOTIFYQ,
    PostgresDatabase,
    PostgresServer,
    Proc,
    RedisServer,
    Stack,
    free_port,
    run_notifyq,
    wait_until,
)
from worker.queues import DISPATCH_QUEUE

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

TEST_CREDENTIALS = {
    "NOTIFYQ_IHUYI_ACCOUNT": "cf_test01",
    "NOTIFYQ_IHUYI_APIKEY": "ihuyi-apikey-7d1c0e55b9f3",
    "NOTIFYQ_JUMDATA_APP_ID": "jumdata-app-42",
    "NOTIFYQ_JUMDATA_APP_SECRET": "jumdata-secret-9f8e7d6c",
    "NOTIFYQ_APISPACE_TOKEN": "apispace-token-5a4b3c2d",
    "NOTIFYQ_ITNIOTECH_API_KEY": "itnio-key-bDqJ",
    "NOTIFYQ_ITNIOTECH_API_SECRET": "itnio-secret-0c9b8a",
    "NOTIFYQ_ITNIOTECH_APP_ID": "4luaKsL2",
    "NOTIFYQ_CALLBACK_TOKEN": "callback-token-e3f1a9",
    "NOTIFYQ_API_KEYS": "api-key-one-71f2,api-key-two-0b9c",
}
SECRETS = [
    v
    for k, v in TEST_CREDENTIALS.items()
    if any(s in k for s in ("APIKEY", "SECRET", "TOKEN", "API_KEY"))
]


# -- Redis ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of the tests' own (or NOTIFYQ_TEST_REDIS_URL): never someone's data."""
    given = os.environ.get("NOTIFYQ_TEST_REDIS_URL")
    if given:
        yield given
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendfsync=None)
    server.start()
    yield server.url
    server.stop()


_databases = itertools.count(1)


@pytest.fixture
def redis_url(redis_base: str) -> str:
    """A flushed Redis database for this test (its own index, so module stacks survive)."""
    url = make_url_db(redis_base, next(_databases) % 16)
    redis.Redis.from_url(url).flushdb()
    return url


def make_url_db(base: str, db: int) -> str:
    return base.rsplit("/", 1)[0] + f"/{db}"


# -- the store ------------------------------------------------------------------------------

BACKENDS = ["sqlite"] + (["postgres"] if os.environ.get("NOTIFYQ_TEST_POSTGRES_URL") else [])


def postgres_database() -> tuple[str, Callable[[], None]]:
    admin_url = os.environ["NOTIFYQ_TEST_POSTGRES_URL"]
    url = make_url(admin_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    name = f"nq_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop


def embedded_settings(database_url: str, redis_url: str, **extra: Any) -> Settings:
    """An embedded runtime's settings: this test's store and Redis, the test credentials."""
    values: dict[str, Any] = {
        k.removeprefix("NOTIFYQ_").lower(): v for k, v in TEST_CREDENTIALS.items()
    }
    values.update(extra)
    return Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=database_url, redis_url=redis_url, **values
    )


@pytest.fixture
def make_runtime(database_url: str, redis_url: str) -> Iterator[Callable[..., Runtime]]:
    """Runtimes in this process on this test's store and Redis (no workers), each with
    the test credentials and the settings given; closed when the test ends."""
    made: list[Runtime] = []

    def factory(**extra: Any) -> Runtime:
        made.append(Runtime.build(embedded_settings(database_url, redis_url, **extra)))
        return made[-1]

    yield factory
    for rt in made:
        rt.close()


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    """A runtime in this process on this test's store and Redis (no workers)."""
    return make_runtime()


@pytest.fixture
def api_client(runtime: Runtime) -> Iterator[TestClient]:
    """The API in this process over ``runtime`` (a module gives ``runtime`` its settings
    by a fixture of its own)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient  # noqa: PLC0415  (only the API's tests)
    from api.app import create_app  # noqa: PLC0415

    with TestClient(create_app(runtime.settings, runtime)) as client:
        yield client


def assert_no_leaks(text: str, numbers: Sequence[str] = ("13800138000",)) -> None:
    """No credential and none of ``numbers`` (however spaced) appears in ``text``."""
    digits = re.sub(r"[\s-]", "", text)
    for secret in SECRETS:
        assert secret not in text, "a credential reached a log"
    for number in numbers:
        assert re.sub(r"\D", "", number) not in digits, "a full phone number reached a log"


def dispatch_messages(client: redis.Redis, queue: str = DISPATCH_QUEUE) -> list[list[int]]:
    """The ids of every dispatch message waiting in the broker's ``queue`` (the normal
    class's unless told), newest first."""
    out = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == "notifyq.dispatch"
        out.append(json.loads(base64.b64decode(message["body"]))[0][0])
    return out


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLite always; PostgreSQL too when NOTIFYQ_TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'notifyq.db'}"
        return
    url, drop = postgres_database()

    upgrade(url)
    yield url
    drop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test process's own, that its tests may stop and start
    (skipped, saying why, where the server's binaries are missing)."""
    why = PostgresServer.unavailable()
    if why:
        pytest.skip(why)
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def own_postgres(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """A fresh, migrated database on that server, which this test may stop and start."""
    if not postgres_server.running():  # a test that failed while it was stopped
        postgres_server.start()
    name = f"nq_own_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    database = PostgresDatabase(postgres_server, name)
    upgrade(database.url)
    yield database


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'notifyq.db'}"


# -- a whole system -----------------------------------------------------------------------


_RECEIVED = re.compile(rb"Task ([\w.]+)\[([0-9a-f-]+)\] received")
_SUCCEEDED = re.compile(rb"Task ([\w.]+)\[([0-9a-f-]+)\] succeeded in")


def runs_since(stack: Stack, mark: dict[Path, int], task: str) -> int:
    """Runs of ``task`` that a worker *received* after ``mark`` (log offsets) and finished:
    each began after the mark was taken, so it saw the state of the system as it was then."""
    received: set[bytes] = set()
    succeeded: set[bytes] = set()
    name = task.encode()
    for proc in stack.procs:
        if not proc.log.exists():
            continue
        with proc.log.open("rb") as handle:
            handle.seek(mark.get(proc.log, 0))
            text = handle.read()
        received.update(m[2] for m in _RECEIVED.finditer(text) if m[1] == name)
        succeeded.update(m[2] for m in _SUCCEEDED.finditer(text) if m[1] == name)
    return len(received & succeeded)


class System:
    """Settings shared by the test process and the notifyq processes it starts."""

    def __init__(
        self, directory: Path, redis_url: str, database_url: str, **overrides: str
    ) -> None:
        self.directory = directory
        self.sandbox_port = free_port()
        self.api_port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        env = {
            "NOTIFYQ_REDIS_URL": redis_url,
            "NOTIFYQ_DATABASE_URL": database_url,
            **TEST_CREDENTIALS,
            "NOTIFYQ_IHUYI_BASE_URL": self.sandbox_url,
            "NOTIFYQ_JUMDATA_BASE_URL": self.sandbox_url,
            "NOTIFYQ_APISPACE_BASE_URL": self.sandbox_url,
            "NOTIFYQ_APISPACE_REPORT_BASE_URL": self.sandbox_url,
            "NOTIFYQ_ITNIOTECH_BASE_URL": self.sandbox_url,
            "NOTIFYQ_PUBLIC_URL": self.api_url,
            "NOTIFYQ_JUMDATA_WINDOW": "",
            "NOTIFYQ_SWEEP_INTERVAL": "2",
            "NOTIFYQ_WORKER_METRICS_PORT": "0",
            "NOTIFYQ_LOG_LEVEL": "INFO",
            # the tests read the API's line per request: numbers and tokens in it masked
            "NOTIFYQ_API_ACCESS_LOG": "true",
        }
        env.update(
            {
                k if k.startswith("NOTIFYQ_") else f"NOTIFYQ_{k.upper()}": str(v)
                for k, v in overrides.items()
            }
        )
        self.env = env
        self.stack = Stack(directory, env)
        self._runtime = None

    @property
    def settings(self):  # type: ignore[no-untyped-def]

        values = {k.removeprefix("NOTIFYQ_").lower(): v for k, v in self.env.items()}
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    @property
    def runtime(self):  # type: ignore[no-untyped-def]
        if self._runtime is None:
            self._runtime = Runtime.build(self.settings)
        return self._runtime

    def sandbox(self, *args: str) -> Proc:
        """This system's sandbox. Its jumdata takes calls all day, as our side does here
        (``NOTIFYQ_JUMDATA_WINDOW=""``), unless ``args`` give a window: no test may
        depend on the hour it runs at (at 23:39 Beijing time a routed jumdata call was
        refused ``606`` and deferred ten minutes, past the test's wait)."""
        return self.stack.sandbox(self.sandbox_port, "--jumdata-window", "", *args)

    def start(
        self,
        *,
        workers: int = 1,
        concurrency: int = 8,
        beat: bool = False,
        api: bool = True,
        sandbox_args: tuple[str, ...] = ("--receipt-delay", "0.3"),
    ) -> System:
        with self.stack.together():
            self.sandbox(*sandbox_args)
            if api:
                self.stack.api(self.api_port)
            for _ in range(workers):
                self.stack.worker("--concurrency", str(concurrency))
            if beat:
                self.stack.beat()
        return self

    def cli(self, *args: str) -> Any:

        return run_notifyq(*args, env={**os.environ, **self.env}, cwd=self.directory)

    def cli_many(self, *commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
        """Several ``notifyq`` commands at once, each its own process as from a shell:
        their start-ups overlap instead of adding up. Results in the order given."""
        return cli_together([(self, args) for args in commands])

    def status(self, notification_id: int) -> str:
        row = self.runtime.notifications.get(notification_id)
        return row.status.value if hasattr(row.status, "value") else str(row.status)

    def statuses(self, ids: list[int]) -> dict[int, str]:
        """Each notification's status from one read ("missing" for an id not stored): a
        poll of a row at a time takes the CPU the workers being watched need."""
        with self.runtime.db.read() as conn:
            rows = self.runtime.notifications.load(conn, ids)
        found = {
            row.id: row.status.value if hasattr(row.status, "value") else str(row.status)
            for row in rows
        }
        return {i: found.get(i, "missing") for i in ids}

    def wait_for(self, ids: list[int], statuses: set[str], timeout: float = 30) -> dict[int, str]:
        def done() -> dict[int, str] | None:
            current = self.statuses(ids)
            return current if all(s in statuses for s in current.values()) else None

        try:
            return wait_until(
                done, timeout, interval=0.2, what=f"{len(ids)} notification(s) to reach {statuses}"
            )
        except TimeoutError:
            counts: dict[str, int] = {}
            for status in self.statuses(ids).values():
                counts[status] = counts.get(status, 0) + 1
            raise TimeoutError(
                f"not all reached {statuses}: {counts}\n{self.stack.report()}"
            ) from None

    def ledger(self, provider: str | None = None) -> list[dict[str, Any]]:
        params = {"provider": provider} if provider else {}
        return httpx.get(f"{self.sandbox_url}/_sandbox/calls", params=params, timeout=30).json()[
            "calls"
        ]

    def placed(self, provider: str | None = None) -> int:
        """How many calls the sandbox placed (a count: cheap to poll, unlike the ledger)."""
        params = {"provider": provider} if provider else {}
        answer = httpx.get(f"{self.sandbox_url}/_sandbox/calls/count", params=params, timeout=30)
        return int(answer.json()["placed"])

    def sandbox_pushes(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.sandbox_url}/_sandbox/pushes", timeout=10).json()["pushes"]

    def sandbox_config(self, **changes: Any) -> dict[str, Any]:
        return httpx.post(f"{self.sandbox_url}/_sandbox/config", json=changes, timeout=10).json()

    # -- time under the test's control (scheduler/clock.py) ------------------------------

    def now(self) -> float:
        """The system's clock: Redis's time plus any offset the test set."""
        return self.runtime.clock.now()

    def advance(self, seconds: float) -> float:
        """Move every process's clock forward (needs ``clock_control="true"``): the
        sandbox's first, then the workers' (Redis's offset). In that order the provider's
        clock is never behind ours: a provider behind could refuse, for its own cap, a call
        our caps had just admitted; one ahead only sees fewer calls in its windows.
        Returns the workers' new offset."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._move_sandbox_clock(self.runtime.clock.offset() + seconds)
        return self.runtime.clock.advance(seconds)

    def advance_to(self, moment: float) -> float:
        return self.advance(max(0.0, moment - self.now()))

    def _move_sandbox_clock(self, offset: float) -> None:
        """The sandbox's ``clock_offset`` (sandbox/state.py), if this system runs one (a
        sandbox starts at offset 0: start it before moving the clock)."""
        if not any(p.name == "sandbox" and p.alive() for p in self.stack.procs):
            return
        answer = httpx.post(
            f"{self.sandbox_url}/_sandbox/config", json={"clock_offset": offset}, timeout=10
        )
        assert answer.status_code == 200, answer.text

    # -- events to wait on instead of sleeping --------------------------------------------

    def log_mark(self) -> dict[Path, int]:
        """Where every process's log ends now (for :meth:`wait_runs`)."""
        return {p.log: p.log.stat().st_size for p in self.stack.procs if p.log.exists()}

    def wait_runs(
        self, task: str, runs: int = 2, timeout: float = 60, mark: dict[Path, int] | None = None
    ) -> int:
        """Until ``runs`` runs of ``task`` (a beat task: ``notifyq.release_due``,
        ``notifyq.campaigns``, ``notifyq.sweep``) that began after ``mark`` (default: now)
        have finished — whatever that task would do about the state as it was at the mark,
        it has done. An event to wait on instead of sleeping "long enough"."""
        mark = self.log_mark() if mark is None else mark
        try:
            return wait_until(
                lambda: runs_since(self.stack, mark, task) >= runs or None,
                timeout,
                interval=0.1,
                what=f"{runs} run(s) of {task} begun after the mark",
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.stack.report()}") from None

    def beat_passes(self, *tasks: str) -> None:
        """Two runs of each of ``tasks`` (fan-out, pump, sweep) that began after this call
        have finished: whatever they would send, re-drive or release, they have — the
        event to wait on before saying that nothing more went out."""
        mark = self.log_mark()
        for task in tasks:
            self.wait_runs(task, 2, timeout=60, mark=mark)

    def empty(self) -> None:
        """Every row of the store and every key of its Redis database gone, the processes
        still running: for tests that share one started system (a module-scoped fixture)
        and each expect to begin from nothing. The clock's offset is kept (a clock that
        went back would re-open windows)."""
        offset = self.runtime.clock.offset()
        with self.runtime.db.write() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
        self.runtime.redis.flushdb()
        if offset:
            self.runtime.redis.set(OFFSET_KEY, repr(offset))

    def close(self) -> None:
        # a test's processes need no long goodbye: what has not exited in 5 s is killed
        self.stack.stop(grace=5)
        if self._runtime is not None:
            self._runtime.close()


def cli_together(
    jobs: Sequence[tuple[System, Sequence[str]]],
) -> list[subprocess.CompletedProcess[str]]:
    """A ``notifyq`` process for each (system, arguments), all started at once, each with
    its system's settings; their results in the order given."""
    procs = [
        subprocess.Popen(
            [NOTIFYQ, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **system.env},
            cwd=system.directory,
        )
        for system, args in jobs
    ]
    results = []
    try:
        for (_, args), proc in zip(jobs, procs, strict=True):
            # all started together on a machine that may be busy: one bound, and generous
            out, err = proc.communicate(timeout=60 + 10 * len(jobs))
            results.append(subprocess.CompletedProcess([NOTIFYQ, *args], proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


@contextlib.contextmanager
def own_system(directory: Path, **overrides: str) -> Iterator[System]:
    """A system for a module-scoped fixture: its own redis-server (no test's flush of a
    shared database can reach it) and its own SQLite store; stopped on leaving."""
    server = RedisServer(directory / "redis", appendfsync=None)
    server.start()
    system = System(directory, server.url, f"sqlite:///{directory / 'notifyq.db'}", **overrides)
    try:
        yield system
    finally:
        system.close()
        server.stop()


@contextlib.contextmanager
def system_on(backend: str, directory: Path, redis_url: str, **overrides: str) -> Iterator[System]:
    """A whole started system (sandbox, API, one worker, beat) for a module-scoped fixture
    on ``backend`` (``sqlite`` or ``postgres``, one of :data:`BACKENDS`) and on a Redis
    database the caller owns (flushed here); stopped, and its database dropped, on
    leaving."""
    redis.Redis.from_url(redis_url).flushdb()
    drop = None
    if backend == "postgres":
        database_url, drop = postgres_database()
        upgrade(database_url)
    else:
        database_url = f"sqlite:///{directory / 'notifyq.db'}"
    system = System(directory, redis_url, database_url, **overrides)
    try:
        yield system.start(beat=True, sandbox_args=("--receipt-delay", "0.2"))
    finally:
        system.close()
        if drop:
            drop()


def system_per_backend(name: str, redis_db: int, **overrides: str) -> Any:
    """A module-scoped ``system`` fixture: a whole started system (:func:`system_on`) for
    each of :data:`BACKENDS`, shared by the module's tests, on Redis database
    ``redis_db`` (each module its own: xdist runs modules side by side)."""

    @pytest.fixture(scope="module", params=BACKENDS)
    def system(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_base: str
    ) -> Iterator[System]:
        directory = tmp_path_factory.mktemp(name)
        redis_url = make_url_db(redis_base, redis_db)
        with system_on(request.param, directory, redis_url, **overrides) as started:
            yield started

    return system


@pytest.fixture
def make_system(tmp_path: Path, redis_url: str, sqlite_url: str) -> Iterator[Callable[..., System]]:
    systems: list[System] = []

    def factory(database_url: str | None = None, **overrides: str) -> System:
        system = System(
            tmp_path / f"system{len(systems)}", redis_url, database_url or sqlite_url, **overrides
        )
        system.directory.mkdir(parents=True, exist_ok=True)
        systems.append(system)
        return system

    yield factory
    for system in systems:
        system.close()


#: the files that take longest (campaigns on real workers, the CLI's process starts,
#: chaos, services stopped by signals), first in the queue, so that no xdist worker is
#: left running one alone at the end (``make test`` passes --no-loadscope-reorder so that
#: xdist keeps this order). Each file alone on 2 cores (``pytest FILE --durations=10``):
#: campaigns ~80 s, the README ~80 s, provider e2e ~70 s, chaos ~45 s, sigterm ~45 s,
#: caps concurrency ~35 s, the first hour's errors ~60 s with others' runs beside it.
LONGEST_FIRST = (
    "tests/e2e/test_campaigns.py",
    "tests/test_readme.py",
    "tests/test_providers_e2e.py",
    "tests/e2e/test_chaos.py",
    "tests/e2e/test_store_outage.py",
    "tests/ops/test_sigterm.py",
    "tests/e2e/test_caps_concurrency.py",
    "tests/cli/test_first_hour.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    # a stable sort: every file's tests stay together and in their order
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a CI timeout, a service manager) tears down like Ctrl-C: fixtures stop
    # their stacks instead of leaving workers, beat and sandboxes running
    if threading.current_thread() is threading.main_thread():
        install_sigterm_as_interrupt()
    # Anything that reads the settings from this process's environment instead of a
    # fixture would reach for a real service; point it nowhere so it fails loudly.
    os.environ["NOTIFYQ_REDIS_URL"] = "redis://127.0.0.1:1/0"
    os.environ["NOTIFYQ_DATABASE_URL"] = "sqlite:///" + str(
        Path(config.rootpath) / "var" / "pytest-unused.db"
    )


def now() -> float:
    return time.time()

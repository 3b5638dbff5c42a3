"""Running a whole notifyq on one machine: a private redis-server on a free port, and the
notifyq processes (sandbox, API, workers, beat) as subprocesses with their logs kept.

``notifyq demo`` uses it; so do the tests and the benchmarks, which is why every
process's output is kept in a file a caller can read back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from harness.signals import die_with_parent

NOTIFYQ = str(Path(sys.executable).with_name("notifyq"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class RedisServer:
    """A private redis-server on a free loopback port, its files in ``directory``.

    ``appendfsync`` None turns AOF off; "everysec" (the default, as in production) may
    lose the last second on a crash — which notifyq's sweeper must, and does, survive;
    "always" loses nothing.
    """

    directory: Path
    port: int = field(default_factory=free_port)
    appendfsync: str | None = "everysec"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: `make demo` or `make test` installs it"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        aof = (
            ["--appendonly", "no"]
            if self.appendfsync is None
            else ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        )
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *aof,
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), 10, what="redis-server")

    def stop(self, *, hard: bool = False) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            self.process.wait(10)

    def restart(self) -> None:
        self.stop(hard=True)
        self.start()


def redis_answers(url: str) -> bool:
    return _pings(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1))


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            # the worker's children (prefork) and its threads go with its process group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            self.process.wait(30)


@dataclass
class Stack:
    """notifyq processes for one test or module, all on the same settings (``env``)."""

    directory: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)
    #: where the processes run (default: ``directory``, where their logs are); a command
    #: that starts them for a person's shell runs them where the person is, so that
    #: relative paths and ``.env`` mean the same to both
    cwd: Path | None = None
    #: the processes get SIGTERM when the process that started them dies, even by SIGKILL
    #: (for a command whose whole job is to keep them: nothing outlives it). A
    #: ``preexec_fn``: only for a caller that starts them before it has other threads
    tied: bool = False
    #: inside :meth:`together`: the readiness checks still to make
    _pending: list[tuple[Proc, str | None, str | None, float]] | None = None

    def start(
        self,
        name: str,
        *args: str,
        ready: str | None = None,
        url: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        timeout: float = 30,
        program: str = NOTIFYQ,
        cwd: Path | None = None,
    ) -> Proc:
        log = self.directory / f"{name}-{len(self.procs)}.log"
        env = {**os.environ, **self.env, **(extra_env or {})}
        handle = open(log, "wb")  # noqa: SIM115 - stays open for the process's life
        process = subprocess.Popen(
            [program, *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd or self.cwd or self.directory,
            start_new_session=True,
            preexec_fn=die_with_parent if self.tied else None,  # noqa: PLW1509 - see tied
        )
        proc = Proc(name, process, log)
        self.procs.append(proc)
        if self._pending is not None:
            self._pending.append((proc, ready, url, timeout))
        else:
            self._wait_ready(proc, ready, url, timeout)
        return proc

    @contextlib.contextmanager
    def together(self) -> Iterator[Stack]:
        """Start every process asked for inside the block at once, and wait for all of them
        to be ready when it ends: start-up (imports, migrations) overlaps instead of adding
        up. Nothing inside the block may rely on an earlier process being ready. Nested
        blocks join the outermost one."""
        if self._pending is not None:
            yield self
            return
        self._pending = []
        try:
            yield self
            pending, self._pending = self._pending, None
            for proc, ready, url, timeout in pending:
                self._wait_ready(proc, ready, url, timeout)
        finally:
            self._pending = None

    @staticmethod
    def _wait_ready(proc: Proc, ready: str | None, url: str | None, timeout: float) -> None:
        name = proc.name
        if ready:
            wait_until(
                lambda: ready in proc.text() or not proc.alive(), timeout, what=f"{name} ready"
            )
        if url:
            wait_until(lambda: _answers(url) or not proc.alive(), timeout, what=f"{name} at {url}")
        if not proc.alive():
            raise RuntimeError(f"{name} exited early:\n{proc.text()[-3000:]}")

    def sandbox(self, port: int, *args: str) -> Proc:
        return self.start(
            "sandbox",
            "sandbox",
            "--port",
            str(port),
            *args,
            url=f"http://127.0.0.1:{port}/_sandbox/config",
        )

    def api(self, port: int) -> Proc:
        return self.start("api", "api", "--port", str(port), url=f"http://127.0.0.1:{port}/healthz")

    def worker(
        self, *args: str, name: str = "worker", extra_env: Mapping[str, str] | None = None
    ) -> Proc:
        return self.start(
            name,
            "worker",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"{name}-{len(self.procs)}@%h",
            *args,
            ready="ready.",
            extra_env=extra_env,
            timeout=60,
        )

    def beat(self) -> Proc:
        return self.start("beat", "beat", ready="is starting.")

    def flower(self, port: int, extra_env: Mapping[str, str] | None = None) -> Proc:
        """Flower on a loopback port (``notifyq flower`` allows no other without a login)."""
        return self.start(
            "flower",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
            url=f"http://127.0.0.1:{port}/healthcheck",
            timeout=60,
            extra_env=extra_env,
        )

    def logs(self) -> str:
        return "\n".join(p.text() for p in self.procs)

    def report(self, tail: int = 1500) -> str:
        """Each process: alive or its exit code, and the end of its log (for a failure)."""
        parts = []
        for proc in self.procs:
            state = "alive" if proc.alive() else f"exited {proc.process.returncode}"
            parts.append(f"--- {proc.name} ({state}) ---\n{proc.text()[-tail:]}")
        return "\n".join(parts)

    def stop(self, grace: float = 15) -> None:
        """SIGTERM to every process, then SIGKILL to any still running ``grace`` seconds
        later (one deadline for all: a sandbox holding a deliberately hung request, or a
        worker finishing a task, does not make the others wait in turn)."""
        for proc in self.procs:
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False

"""The tests start real services with the same supervisor as ``notifyq demo``."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis
import redis.sentinel

from harness.supervise import NOTIFYQ, Proc, RedisServer, Stack, free_port, wait_until

__all__ = [
    "NOTIFYQ",
    "PostgresDatabase",
    "PostgresServer",
    "Proc",
    "RedisServer",
    "Replicated",
    "Stack",
    "free_port",
    "processes_under",
    "redis_now",
    "replicated",
    "run_notifyq",
    "sentinel_watching",
    "sleep_until",
    "wait_until",
]


def run_notifyq(
    *args: str, env: Mapping[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``notifyq ARGS`` as from a shell in ``cwd`` with exactly ``env``; its output kept."""
    return subprocess.run(
        [NOTIFYQ, *args], capture_output=True, text=True, env=dict(env), cwd=cwd, timeout=timeout
    )


def redis_now(client: redis.Redis) -> float:
    """Redis's own clock (``TIME``): the one the caps, rates and deferred set read."""
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def sleep_until(client: redis.Redis, moment: float) -> None:
    """Sleep until Redis's clock has passed ``moment``.

    Only to reach a moment at which something must be *allowed* (sleeping longer on a busy
    machine cannot make that false); every "still refused" check after it needs a window
    far longer than a scheduling delay left."""
    time.sleep(max(0.0, moment - redis_now(client) + 0.005))


@contextlib.contextmanager
def sentinel_watching(directory: Path, service: str) -> Iterator[tuple[int, RedisServer]]:
    """A Redis master and one Sentinel watching it as ``service`` (quorum 1): yields the
    Sentinel's port and the master, once the Sentinel names that master."""
    master = RedisServer(directory / "master", appendfsync=None)
    master.start()
    try:
        with _sentinel(directory, service, master, down_after_ms=5000) as port:
            yield port, master
    finally:
        master.stop()


@dataclass
class Replicated:
    """A master, its replica and a Sentinel watching them (quorum 1, a master down after
    1 s): a fail-over that takes seconds, with the replica cut off before it if wanted."""

    service: str
    sentinel_port: int
    master: RedisServer
    replica: RedisServer

    @property
    def url(self) -> str:
        """notifyq's spelling of this service behind its Sentinel (scheduler/connect.py)."""
        return f"sentinel://127.0.0.1:{self.sentinel_port}/{self.service}/0"

    def cut_off_replica(self) -> None:
        """From now on the replica receives nothing from the master, as behind a network
        partition: it is frozen (SIGSTOP), so what it had read is all it has, and the
        master drops its link, so nothing more is even queued towards it (a frozen
        process would still find the bytes in its socket buffer when it woke)."""
        assert self.replica.process is not None
        self.replica.process.send_signal(signal.SIGSTOP)
        redis.Redis.from_url(self.master.url).execute_command("CLIENT", "KILL", "TYPE", "replica")

    def fail_over(self, timeout: float = 60) -> None:
        """The master dies (SIGKILL); the replica wakes, and once the Sentinel has promoted
        it, it is the master the Sentinel names."""
        self.master.stop(hard=True)
        assert self.replica.process is not None
        self.replica.process.send_signal(signal.SIGCONT)
        asker = redis.Redis(host="127.0.0.1", port=self.sentinel_port)
        promoted = redis.Redis.from_url(self.replica.url)
        sentinel = redis.sentinel.Sentinel([("127.0.0.1", self.sentinel_port)])
        wait_until(
            lambda: (
                _names(asker, self.service, self.replica.port)
                and promoted.execute_command("ROLE")[0] == b"master"
                and _serves(sentinel, self.service, self.replica.port)
            ),
            timeout,
            interval=0.2,
            what="the Sentinel to promote the replica",
        )


@contextlib.contextmanager
def replicated(directory: Path, service: str) -> Iterator[Replicated]:
    """A master with one replica in sync, and a Sentinel that knows both."""
    master = RedisServer(directory / "master", appendfsync=None)
    replica = RedisServer(directory / "replica", appendfsync=None)
    master.start()
    replica.start()
    try:
        redis.Redis.from_url(replica.url).replicaof("127.0.0.1", master.port)
        writer = redis.Redis.from_url(master.url)
        wait_until(lambda: writer.wait(1, 100) == 1, 30, what="the replica in sync")
        with _sentinel(directory, service, master, down_after_ms=1000) as port:
            asker = redis.Redis(host="127.0.0.1", port=port)
            wait_until(
                lambda: asker.execute_command("SENTINEL", "REPLICAS", service),
                30,
                interval=0.2,
                what="the sentinel to find the replica",
            )
            yield Replicated(service, port, master, replica)
    finally:
        if replica.process is not None and replica.process.poll() is None:
            replica.process.send_signal(signal.SIGCONT)
        replica.stop()
        master.stop()


@contextlib.contextmanager
def _sentinel(
    directory: Path, service: str, master: RedisServer, *, down_after_ms: int
) -> Iterator[int]:
    """A Sentinel (quorum 1) watching ``master`` as ``service``: its port, once it names
    that master."""
    port = free_port()
    config = directory / "sentinel.conf"  # a Sentinel rewrites its config: a file of its own
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor {service} 127.0.0.1 {master.port} 1\n"
        f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
        f"sentinel failover-timeout {service} 10000\n"
    )
    proc = subprocess.Popen(
        ["redis-server", str(config), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        asker = redis.Redis(host="127.0.0.1", port=port)
        wait_until(
            lambda: _names(asker, service, master.port), 15, what="the sentinel knows the master"
        )
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _serves(sentinel: redis.sentinel.Sentinel, service: str, port: int) -> bool:
    """Whether a client asking the Sentinel (as redis-py's pools do: the master's state
    read and checked, not only its address) is given ``port``: just after a promotion
    the Sentinel may name the new master while still flagging it down, and a client
    then finds no master at all."""
    try:
        return sentinel.discover_master(service)[1] == port
    except (redis.ConnectionError, redis.sentinel.MasterNotFoundError):
        return False


def _names(asker: redis.Redis, service: str, port: int) -> bool:
    try:
        # the raw command: redis-py 6.4's parser for the named method is broken ("once")
        reply = asker.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service)
    except (redis.ConnectionError, redis.ResponseError):
        return False
    return bool(reply) and int(reply[1]) == port


def processes_under(directory: Path) -> dict[int, str]:
    """Live processes whose working directory is inside ``directory``: what a command run
    there started (the demo, ``notifyq dev``, a README session), pid → command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = next(
                line for line in (entry / "status").read_text().splitlines() if line[:6] == "State:"
            )
        except (OSError, StopIteration):
            continue
        if "Z" in state.split()[1]:
            continue  # a zombie has exited; its parent has yet to reap it
        if cwd == directory or directory in cwd.parents:
            found[int(entry.name)] = cmdline
    return found


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server binaries (initdb, pg_ctl), if installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class PostgresServer:
    """A PostgreSQL cluster of a test's own in a temporary folder, on a free loopback
    port, that the test may stop and start (``pg_ctl``). As root it runs as the
    ``postgres`` user (the server refuses root). :meth:`unavailable` says why it cannot
    run here (no binaries, no such user), for a skip that gives its reason."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bin = postgres_bin()
        self.directory = Path(tempfile.mkdtemp(prefix="nq-pg-"))
        self.data = self.directory / "data"

    @staticmethod
    def unavailable() -> str | None:
        if postgres_bin() is None:
            return "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/pg_ctl)"
        if os.geteuid() == 0 and not _user_exists("postgres"):
            return "running as root and there is no postgres user to run the server as"
        return None

    @property
    def url(self) -> str:
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def running(self) -> bool:
        try:
            self._run("pg_ctl", "status", "-D", str(self.data))
        except subprocess.CalledProcessError:  # 3: no server running
            return False
        return True

    def _run(self, *args: str, timeout: float = 120) -> None:
        assert self.bin is not None
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)

    def start(self) -> None:
        if not self.data.exists():
            if os.geteuid() == 0:
                shutil.chown(self.directory, "postgres")
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N")
        # fsync off: a test's cluster need not survive the machine crashing; commits stay
        # synchronous, or an immediate stop would lose those still in the WAL buffers
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
        )

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: as a crash or a pulled cable, no goodbye to the clients."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class PostgresDatabase:
    """A database of a test's own on a :class:`PostgresServer` it shares with others in
    its process: a fresh database is a fraction of a second, a fresh cluster seconds.
    The test may stop and start the server; the next test finds it started."""

    def __init__(self, server: PostgresServer, name: str) -> None:
        self.server = server
        self.name = name

    @property
    def url(self) -> str:
        return self.server.url_of(self.name)

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def serve_http(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """A stand-in HTTP server on a free port of 127.0.0.1, each request on a thread of
    its own, serving until :func:`stop_http`; and its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def stop_http(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()

"""What a newcomer meets first says what to do, in one line: a missing SQLite folder is
made (wherever the command runs), and an unopenable database, no Redis, a port in use, a
misspelt setting, a worker run as root and providers without credentials at their live
addresses are each named with what to change. Real processes, real Redis, real sockets."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.conftest import TEST_CREDENTIALS
from tests.services import NOTIFYQ, Proc, free_port, run_notifyq, wait_until

TEXT = "您的订单号是：9633。已由顺风快递发出，请注意查收。"


def newcomer_env(**settings: str) -> dict[str, str]:
    """This process's environment without any NOTIFYQ_* (the tests point those nowhere),
    plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFYQ_")}
    return {**env, **settings}


def notifyq(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return run_notifyq(*args, env=newcomer_env(**settings), cwd=cwd, timeout=120)


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    return lines[0]


# -- the store -------------------------------------------------------------------------------


def test_the_default_store_gets_its_folder_wherever_the_command_runs(
    tmp_path: Path, redis_url: str
) -> None:
    """``var/notifyq.db`` is relative to the working directory: each folder gets its own,
    made on the first command; a deeper relative path gets every missing folder."""
    for folder in (tmp_path / "one", tmp_path / "two" / "deeper"):
        folder.mkdir(parents=True)
        done = notifyq(folder, "db", "upgrade", NOTIFYQ_REDIS_URL=redis_url)
        assert done.returncode == 0, done.stderr
        assert (folder / "var" / "notifyq.db").is_file()
    nested = notifyq(
        tmp_path / "one",
        "send",
        "ihuyi",
        "--to",
        "13800138000",
        "--content",
        TEXT,
        NOTIFYQ_REDIS_URL=redis_url,
        NOTIFYQ_DATABASE_URL="sqlite:///a/b/c/notifyq.db",
    )
    assert nested.returncode == 0, nested.stderr
    assert (tmp_path / "one" / "a" / "b" / "c" / "notifyq.db").is_file()


@pytest.mark.parametrize("kind", ["folder under a file", "not a database", "postgres closed"])
def test_a_database_that_cannot_be_opened_is_named_with_its_setting(
    tmp_path: Path, redis_url: str, kind: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is no SQLite database, just bytes" * 100)
    url, named = {
        "folder under a file": (f"sqlite:///{blocker}/var/notifyq.db", f"{blocker}/var/notifyq.db"),
        "not a database": (f"sqlite:///{garbage}", str(garbage)),
        "postgres closed": (
            f"postgresql+psycopg://notifyq:hunter2@127.0.0.1:{free_port()}/notifyq",
            "postgresql+psycopg://notifyq:***@127.0.0.1",
        ),
    }[kind]
    for args in (("status", "1"), ("db", "upgrade")):
        done = notifyq(tmp_path, *args, NOTIFYQ_REDIS_URL=redis_url, NOTIFYQ_DATABASE_URL=url)
        assert done.returncode == 1, done.stderr
        line = one_error_line(done)
        assert f"cannot open the database {named}" in line, line
        assert "NOTIFYQ_DATABASE_URL" in line and "hunter2" not in line, line


# -- Redis ---------------------------------------------------------------------------------------


def test_no_redis_is_named_with_its_setting_and_nothing_is_stored(tmp_path: Path) -> None:
    nowhere = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    database = tmp_path / "var" / "notifyq.db"
    for args in (
        ("send", "ihuyi", "--to", "13800138000", "--content", TEXT),
        ("suppress", "add", "13800138000"),
        ("dev",),
    ):
        done = notifyq(tmp_path, *args, NOTIFYQ_REDIS_URL=nowhere)
        assert done.returncode == 1, done.stderr
        line = one_error_line(done)
        assert f"no Redis answers at redis://:***@127.0.0.1:{nowhere.rsplit(':', 1)[1]}" in line
        assert "NOTIFYQ_REDIS_URL" in line and "redis-server" in line, line
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM notifications").fetchone() == (0,)


# -- ports ---------------------------------------------------------------------------------------


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("api", "--port"), "--port"),
        (("sandbox", "--port"), "--port"),
        (("dev", "--port"), "--port"),
        (("dev", "--sandbox-port"), "--sandbox-port"),
    ],
)
def test_a_port_in_use_is_named_with_the_option_that_moves_it(
    tmp_path: Path, redis_url: str, taken_port: int, args: tuple[str, str], option: str
) -> None:
    others = ["--port", str(free_port())] if option == "--sandbox-port" else []
    done = notifyq(tmp_path, *args, str(taken_port), *others, NOTIFYQ_REDIS_URL=redis_url)
    assert done.returncode == 1, done.stderr
    line = one_error_line(done)
    assert f"port {taken_port} on 127.0.0.1 is already in use" in line, line
    assert line.endswith(f"choose another with {option}"), line


# -- settings --------------------------------------------------------------------------------------


def test_a_misspelt_setting_is_warned_about_naming_the_real_one(
    tmp_path: Path, redis_url: str
) -> None:
    (tmp_path / ".env").write_text("NOTIFYQ_REDIS_URI=redis://elsewhere\n")
    done = notifyq(
        tmp_path,
        "db",
        "upgrade",
        NOTIFYQ_REDIS_URL=redis_url,
        NOTIFYQ_DATABSE_URL="sqlite:///elsewhere.db",
        NOTIFYQ_TEST_REDIS_URL="redis://the-tests-own",
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: NOTIFYQ_DATABSE_URL is not a notifyq setting (ignored): "
        "did you mean NOTIFYQ_DATABASE_URL?",
        "warning: NOTIFYQ_REDIS_URI is not a notifyq setting (ignored): "
        "did you mean NOTIFYQ_REDIS_URL?",
    ]
    assert (tmp_path / "var" / "notifyq.db").is_file()  # the default store, as warned


# -- the worker's start ----------------------------------------------------------------------------


def as_root() -> list[str]:
    """What runs a program as root here: nothing for root, else ``unshare -r`` (root of
    a user namespace of its own, as a container's root is)."""
    if os.geteuid() == 0:
        return []
    if shutil.which("unshare") and subprocess.run(["unshare", "-r", "true"]).returncode == 0:
        return ["unshare", "-r"]
    pytest.skip("neither root nor allowed a user namespace to be root in")


@contextlib.contextmanager
def started(
    cwd: Path, log: Path, *args: str, ready: str, prefix: Sequence[str] = (), **settings: str
) -> Iterator[Proc]:
    """A notifyq process on only ``settings``, until its log shows ``ready``."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*prefix, NOTIFYQ, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=newcomer_env(**settings),
            start_new_session=True,
        )
    proc = Proc(args[0], process, log)
    try:
        wait_until(lambda: ready in proc.text() or not proc.alive(), 120, what=f"{ready!r}")
        yield proc
    finally:
        proc.kill(signal.SIGTERM)


def test_a_worker_says_in_one_line_each_what_to_change(tmp_path: Path, redis_url: str) -> None:
    """Without credentials at a live address: one line naming each missing setting (a
    provider pointed elsewhere is left alone). As root: one line, not Celery's
    screen-long SecurityWarning."""
    settings = {k: v for k, v in TEST_CREDENTIALS.items() if "IHUYI" not in k}
    del settings["NOTIFYQ_JUMDATA_APP_SECRET"]
    settings.update(
        NOTIFYQ_REDIS_URL=redis_url,
        NOTIFYQ_WORKER_METRICS_PORT="0",
        NOTIFYQ_JUMDATA_BASE_URL="http://127.0.0.1:1",
    )
    args = ("worker", "--concurrency", "2", "--without-mingle", "--without-gossip")
    log = tmp_path / "worker.log"
    with started(tmp_path, log, *args, ready="ready.", prefix=as_root(), **settings) as worker:
        text = worker.text()
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert [w for w in warnings if "credentials" in w] == [
        "warning: no credentials for the live APIs of ihuyi (NOTIFYQ_IHUYI_ACCOUNT, "
        "NOTIFYQ_IHUYI_APIKEY): their notifications wait until these are set "
        "(notifyq dev uses the sandbox)"
    ]
    assert [w for w in warnings if "root" in w] == [
        "warning: notifyq worker runs as root: run it as an unprivileged user (the image uses one)"
    ]
    assert "superuser" not in text, text


# -- status --wait ---------------------------------------------------------------------------------


def test_status_wait_gives_up_after_its_timeout_saying_where_it_is(
    tmp_path: Path, redis_url: str
) -> None:
    sent = notifyq(
        tmp_path, "send", "ihuyi", "--to", "13800138000", "--content", TEXT,
        NOTIFYQ_REDIS_URL=redis_url,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    waited = notifyq(
        tmp_path, "status", sent.stdout.strip(), "--wait", "--timeout", "0.5",
        NOTIFYQ_REDIS_URL=redis_url,
    )  # fmt: skip
    assert waited.returncode == 1
    assert "queued" in waited.stdout
    assert one_error_line(waited) == "error: notification 1 is still queued after 0.5 s"


def test_dev_stops_everything_when_one_part_dies(tmp_path: Path, redis_url: str) -> None:
    """A worker killed under ``notifyq dev``: dev says which part stopped and where its
    log is, stops the others (their ports close) and exits 1."""
    api_port, sandbox_port = free_port(), free_port()
    args = ("dev", "--port", str(api_port), "--sandbox-port", str(sandbox_port))
    logs = tmp_path / "var" / "dev"
    with started(tmp_path, tmp_path / "dev.log", *args, ready="notifyq dev:",
                 NOTIFYQ_REDIS_URL=redis_url) as dev:  # fmt: skip
        (worker_log,) = logs.glob("worker-*.log")
        os.kill(writer_of(worker_log), signal.SIGKILL)
        dev.process.wait(60)
    assert dev.process.returncode == 1, dev.text()
    line = dev.text().strip().splitlines()[-1]
    assert line.startswith("error: the worker stopped (exit -9): "), line
    assert line.endswith(f"(log: var/dev/{worker_log.name})"), line
    for port in (api_port, sandbox_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"


def writer_of(log: Path) -> int:
    """The process whose output goes to ``log``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(os.readlink(entry / "fd" / "1")) == log:
                    return int(entry.name)
    raise LookupError(f"nothing writes {log}")

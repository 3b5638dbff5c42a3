"""The README as a newcomer reads it: its shell blocks run as written.

The blocks of "Send one", "Verification codes", "Suppressed numbers" and "Campaigns" are
read from README.md when the test runs (a changed README is the text tested) and run one
after another in one bash session, in an empty folder, with only the ``notifyq`` of a
fresh virtualenv on the PATH: notifyq installed by pip from a wheel of this checkout, as
``pip install .`` leaves it (the third-party packages are this checkout's, installed by
``make install`` from the same pins, so the run needs no index). No ``NOTIFYQ_*``
variable is set but what the blocks set.

Ports 8000 and 9000 and Redis's 6379 are written in the README, so the session runs in a
network namespace of its own (``unshare -rn``), with a private ``redis-server`` at the
default address: the README's own situation, and nothing else on this machine is
touched. Where namespaces are not allowed, a private Redis on a free port is given in
``NOTIFYQ_REDIS_URL`` instead, and the test needs 8000 and 9000 free.

Every command must exit 0 (``set -e``; a failing one is named with its status), every
command started in the background must still be running when the blocks end, a
``console`` block's output must be what the README shows, and the system must end as
the blocks say: every notification final (delivered, or failed because its number is
suppressed, or cancelled), every verification approved, every campaign completed or
cancelled.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from cli.common import port_taken
from store import Database
from tests.services import RedisServer, processes_under, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("Send one", "Verification codes", "Suppressed numbers", "Campaigns")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: what the checkout holds that a wheel is not built from
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


@dataclass(frozen=True)
class Block:
    section: str
    kind: str  # "sh": run; "console": ``$ command`` lines and the output they show
    text: str


def readme_blocks(readme: str) -> list[Block]:
    """The ``sh`` and ``console`` blocks of :data:`SECTIONS`, in the README's order."""
    blocks = []
    for section in SECTIONS:
        start = readme.index(f"\n## {section}\n")
        end = readme.find("\n## ", start + 1)
        body = readme[start : end if end != -1 else len(readme)]
        blocks += [
            Block(section, kind, code)
            for kind, code in FENCE.findall(body)
            if kind in ("sh", "console")
        ]
    return blocks


def console_commands(block: Block) -> tuple[list[str], str]:
    """A console block's commands and the output it shows for them, together."""
    commands, shown = [], []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            commands.append(line[2:])
        else:
            shown.append(line)
    return commands, "\n".join(shown)


def test_each_section_holds_a_block_to_run() -> None:
    """A renamed section or a block in another language would otherwise run nothing."""
    blocks = readme_blocks((ROOT / "README.md").read_text())
    for section in SECTIONS:
        assert any(b.section == section and b.kind == "sh" for b in blocks), section


# -- notifyq, installed as a newcomer installs it ------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv outside the checkout with notifyq installed by pip from a wheel of
    the checkout's files (its ``bin`` is returned). The wheel is built from a copy, so
    the checkout gets no ``build/``."""
    base = tmp_path_factory.mktemp("install")
    source, wheels, venv = base / "source", base / "wheels", base / "venv"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    run([*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(source)])
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    (wheel,) = wheels.glob("notifyq-*.whl")
    run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", str(wheel)])
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site / "third-party.pth").write_text(
        "".join(f"{p}\n" for p in sys.path if p.endswith("site-packages"))
    )
    return venv / "bin"


def run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{shlex.join(argv)}:\n{done.stdout}\n{done.stderr}"


def test_the_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    """What the README test runs is the wheel's code, in a folder of its own."""
    found = subprocess.run(
        [str(installed / "python"), "-c", "import cli, store; print(cli.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).is_relative_to(installed.parent), found.stdout


# -- the session ------------------------------------------------------------------------------


def namespaces_allowed() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0


PRELUDE_OWN_NETWORK = """\
ip link set lo up
redis-server --port 6379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \\
    --dir {state} --pidfile {state}/redis.pid --logfile {state}/redis.log
for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
"""
PRELUDE_SHARED_NETWORK = "export NOTIFYQ_REDIS_URL={redis_url}\n"
EPILOGUE_OWN_NETWORK = "kill $(cat {state}/redis.pid) 2>/dev/null || true\n"


def session_script(blocks: list[Block], state: Path, prelude: str, epilogue: str) -> str:
    """One bash session: the prelude (a Redis), every block, then a report of the
    background commands, and a wait until the test stops them."""
    lines = [
        "set -euo pipefail",
        "trap 'echo \"README COMMAND FAILED (exit $?): $BASH_COMMAND\" >&2' ERR",
        prelude,
        "PS4='+ ${EPOCHREALTIME} '",  # when each command began, for a slow or failed run
        "set -x",
    ]
    for number, block in enumerate(blocks):
        lines.append(f"# --- {block.section}, block {number} ({block.kind})")
        if block.kind == "sh":
            lines.append(block.text)
            continue
        commands, _ = console_commands(block)
        out = shlex.quote(str(state / f"console-{number}.out"))
        # the commands' own output only: no trace, and a failure is what it shows
        lines += ["{ set +x; } 2>/dev/null", "( set +e", *commands, f") > {out} 2>&1", "set -x"]
    lines += [
        "{ set +x; } 2>/dev/null",
        f"jobs -l > {state}/jobs",
        f"jobs -p > {state}/pids",
        f"touch {state}/blocks-done",
        "wait || true",
        epilogue,
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def fixed_ports_free() -> Iterator[None]:
    """Without a namespace of our own: one README session at a time on this machine,
    and the README's ports free."""
    with open("/tmp/notifyq-readme-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        taken = [p for p in (8000, 9000) if port_taken("127.0.0.1", p)]
        if taken:
            pytest.fail(f"the README's ports {taken} are in use on this machine")
        yield


@dataclass
class Session:
    process: subprocess.Popen[bytes]
    state: Path
    transcript: Path
    folder: Path

    def output(self) -> str:
        text = self.transcript.read_text(errors="replace")
        logs = sorted((self.folder / "var" / "dev").glob("*.log"))
        tails = "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in logs)
        return f"{text[-6000:]}{tails}"

    def blocks_done(self) -> bool:
        return (self.state / "blocks-done").exists() or self.process.poll() is not None

    def stop(self) -> None:
        """SIGTERM to what the blocks left running (``notifyq dev`` stops what it
        started), then the session ends; anything left in the folder is ended by pid."""
        pids = self.state / "pids"
        for pid in pids.read_text().split() if pids.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        for pid in processes_under(self.state.parent):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def session(blocks: list[Block], bin_dir: Path, tmp_path: Path) -> Iterator[Session]:
    state, folder = tmp_path / "state", tmp_path / "newcomer"
    state.mkdir()
    folder.mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("NOTIFYQ_") and k != "PYTHONPATH"
    }
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", LANG="C.UTF-8")
    with contextlib.ExitStack() as stack:
        if namespaces_allowed():
            argv = ["unshare", "-rn", "bash"]
            prelude = PRELUDE_OWN_NETWORK.format(state=state)
            epilogue = EPILOGUE_OWN_NETWORK.format(state=state)
        else:
            stack.enter_context(fixed_ports_free())
            redis_server = RedisServer(state / "redis", appendfsync=None)
            redis_server.start()
            stack.callback(redis_server.stop)
            argv = ["bash"]
            prelude = PRELUDE_SHARED_NETWORK.format(redis_url=redis_server.url)
            epilogue = ""
        script = state / "session.sh"
        script.write_text(session_script(blocks, state, prelude, epilogue))
        transcript = state / "transcript.txt"
        with transcript.open("wb") as out:
            process = subprocess.Popen(
                [*argv, str(script)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=folder,
                start_new_session=True,
            )
        running = Session(process, state, transcript, folder)
        try:
            yield running
        finally:
            running.stop()


# -- what the blocks leave behind -------------------------------------------------------------


FINAL = ("delivered", "failed", "cancelled", "undelivered", "unknown")


def ledger(folder: Path) -> Database:
    return Database(f"sqlite:///{folder / 'var' / 'notifyq.db'}")


def statuses(db: Database) -> list[tuple[int, str, str | None, int | None]]:
    with db.read() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text("SELECT id, status, reason, campaign_id FROM notifications ORDER BY id")
            )
        ]


@pytest.mark.timeout(900)  # about a minute on a quiet machine; far longer under test-stress
def test_the_readme_blocks_run_as_written_in_an_empty_folder(
    installed: Path, tmp_path: Path
) -> None:
    blocks = readme_blocks((ROOT / "README.md").read_text())
    with session(blocks, installed, tmp_path) as newcomer:
        wait_until(newcomer.blocks_done, 600, interval=0.2, what="the README's blocks")
        assert newcomer.process.poll() is None, (
            f"a README command failed (exit {newcomer.process.returncode}):\n{newcomer.output()}"
        )
        jobs = (newcomer.state / "jobs").read_text().splitlines()
        stopped = [line for line in jobs if "Running" not in line]
        assert not stopped, f"a background command stopped: {stopped}\n{newcomer.output()}"

        for number, block in enumerate(blocks):
            if block.kind == "console":
                shown = console_commands(block)[1]
                got = (newcomer.state / f"console-{number}.out").read_text().rstrip("\n")
                assert got == shown, f"{block.section}: the README shows\n{shown}\ngot\n{got}"

        db = ledger(newcomer.folder)

        def all_final() -> list[tuple[int, str, str | None, int | None]] | None:
            found = statuses(db)
            return found if found and all(s in FINAL for _, s, _, _ in found) else None

        try:
            rows = wait_until(
                all_final, 120, interval=0.5, what="every notification the README made, final"
            )
            with db.read() as conn:
                verifications = conn.execute(text("SELECT id, status FROM verifications")).all()
                campaigns = conn.execute(text("SELECT id, status FROM campaigns")).all()
        finally:
            db.dispose()
    for notification_id, status, reason, _ in rows:
        assert (
            status == "delivered"
            or (status == "failed" and (reason or "").startswith("suppressed:"))
            or status == "cancelled"
        ), (notification_id, status, reason)
    assert any(s == "delivered" and c is None for _, s, _, c in rows), "Send one: no delivery"
    assert verifications and {s for _, s in verifications} == {"approved"}, verifications
    assert campaigns and {s for _, s in campaigns} <= {"completed", "cancelled"}, campaigns

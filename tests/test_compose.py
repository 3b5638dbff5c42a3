"""docker-compose.yml brings up the whole system: the file parses, every service the
system needs is there, Redis keeps an AOF, and every notifyq command it runs exists."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import yaml

from tests.services import NOTIFYQ

ROOT = Path(__file__).resolve().parents[1]
NEEDED = {"redis", "postgres", "migrate", "api", "worker", "beat", "flower", "sandbox"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_file_parses_and_has_every_service() -> None:
    services = compose()["services"]
    assert set(services) >= NEEDED
    assert "--appendonly" in services["redis"]["command"]
    assert (
        services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1]
        == "yes"
    )


def test_every_notifyq_service_runs_a_command_that_exists() -> None:
    for name, service in compose()["services"].items():
        if name in ("redis", "postgres"):
            continue
        command = service["command"]
        words = command if isinstance(command, list) else shlex.split(command)
        subcommand = [w for w in words if not w.startswith("-")][:2]
        probe = subprocess.run(
            [NOTIFYQ, *subcommand[:1], "--help"], capture_output=True, text=True, timeout=60
        )
        assert probe.returncode == 0, (
            f"{name}: `notifyq {subcommand[0]}` does not exist: {probe.stderr}"
        )
        if subcommand[0] == "db":
            assert (
                subprocess.run(
                    [NOTIFYQ, "db", subcommand[1], "--help"], capture_output=True, timeout=60
                ).returncode
                == 0
            )


def test_the_image_installs_every_package_the_commands_import() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("api", "providers", "scheduler", "tasks", "worker"):
        assert f"COPY {package} {package}" in dockerfile
    assert "constraints.txt" in dockerfile

"""The compose files an operator runs, checked without a Docker daemon.

docker-compose.yml is production: it talks to the real providers, refuses to start
without its secrets (``${VAR:?message}``, never a default), has a healthcheck on every
long-running service, gives a stopping worker longer than a provider call may take, keeps
Flower behind a login and /metrics and /docs behind the key, and publishes no metrics
port. docker-compose.sandbox.yml is the only place the sandbox appears. Where the
``docker compose`` plugin exists, it must accept both files as well.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import Settings
from tests.services import NOTIFYQ

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "docker-compose.yml"
SANDBOX = ROOT / "docker-compose.sandbox.yml"
NEEDED = {"redis", "postgres", "migrate", "api", "worker", "beat", "flower"}
NOTIFYQ_SERVICES = ("api", "worker", "beat", "flower")
#: services that run once and exit: nothing to keep healthy
ONE_SHOT = {"migrate"}
SECRET_NAME = re.compile(r"(API_?KEYS?|TOKEN|PASSWORD|SECRET|BASIC_AUTH)$")
#: every secret the live file must demand, by the variable it is read from
REQUIRED_SECRETS = {
    "NOTIFYQ_API_KEYS",
    "NOTIFYQ_IHUYI_CALLBACK_TOKEN",
    "NOTIFYQ_JUMDATA_CALLBACK_TOKEN",
    "NOTIFYQ_APISPACE_SMS_CALLBACK_TOKEN",
    "NOTIFYQ_ITNIOTECH_CALLBACK_TOKEN",
    "NOTIFYQ_METRICS_TOKEN",
    "NOTIFYQ_FLOWER_BASIC_AUTH",
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
}
REFERENCE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def strings(node: Any) -> list[str]:
    """Every string anywhere in a YAML document (keys and values)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


def seconds(duration: str) -> float:
    """A compose duration (``75s``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def env(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {k: str(v) for k, v in environment.items()}


# -- production: no secret has a default --------------------------------------------------


def test_the_live_file_has_every_service_and_no_sandbox() -> None:
    services = load(BASE)["services"]
    assert set(services) >= NEEDED
    assert "sandbox" not in services
    assert not [s for s in strings(load(BASE)) if "sandbox" in s.lower() and "9000" in s]
    for name in NOTIFYQ_SERVICES:
        urls = [k for k in env(services[name]) if k.endswith("_BASE_URL")]
        assert urls == [], f"{name} points {urls} somewhere: live means the providers' own"
    redis_command = services["redis"]["command"]
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"


def test_no_secret_has_a_default_and_every_one_is_demanded() -> None:
    text = BASE.read_text()
    assert "change-me" not in text
    demanded = set()
    for match in REFERENCE.finditer(text):
        name, op = match["name"], match["op"] or ""
        if SECRET_NAME.search(name):
            assert op == ":?", f"${{{name}{op}…}}: a secret must be ${{{name}:?message}}"
            assert match["arg"].strip(), f"{name}: the refusal must say what to set"
            demanded.add(name)
    assert demanded >= REQUIRED_SECRETS, REQUIRED_SECRETS - demanded
    services = load(BASE)["services"]
    for name in NOTIFYQ_SERVICES:
        values = env(services[name])
        url = values["NOTIFYQ_DATABASE_URL"]
        assert "${POSTGRES_PASSWORD:?" in url, f"{name}: the database password is demanded"
        for key, value in values.items():
            if SECRET_NAME.search(key):
                assert value.startswith("${") and ":?" in value, f"{name}: {key} = {value!r}"
    assert env(services["postgres"])["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_operator_routes_and_flower_are_behind_a_login() -> None:
    services = load(BASE)["services"]
    for name in NOTIFYQ_SERVICES:
        assert env(services[name])["NOTIFYQ_OPS_ROUTES_NEED_KEY"] == "true", name
    flower = services["flower"]
    assert env(flower)["NOTIFYQ_FLOWER_BASIC_AUTH"].startswith("${NOTIFYQ_FLOWER_BASIC_AUTH:?")
    for port in flower.get("ports", []):
        assert str(port).startswith("127.0.0.1:"), f"flower published beyond loopback: {port}"


def test_healthchecks_on_every_long_running_service_in_both_files() -> None:
    for path in (BASE, SANDBOX):
        for name, service in load(path)["services"].items():
            if name in ONE_SHOT or (path == SANDBOX and "image" not in service):
                continue  # an overlay entry that only adds to a service of the live file
            check = service.get("healthcheck")
            assert check and check.get("test"), f"{path.name}: {name} has no healthcheck"
            assert not check.get("disable"), name


def test_notifyq_healthchecks_are_commands_that_exist() -> None:
    services = load(BASE)["services"]
    for name in NOTIFYQ_SERVICES:
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "notifyq", "healthcheck"], test
        assert test[3] == name
    probe = subprocess.run(
        [NOTIFYQ, "healthcheck", "--help"], capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 0, probe.stderr


def test_a_stopping_worker_has_longer_than_a_provider_call() -> None:
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    longest_call = defaults.http_connect_timeout + defaults.http_read_timeout
    services = load(BASE)["services"]
    for name in NOTIFYQ_SERVICES:
        grace = seconds(services[name]["stop_grace_period"])
        assert grace > longest_call + 10, f"{name}: {grace}s to stop, a call takes {longest_call}s"
        assert services[name].get("init") is True, f"{name}: SIGTERM reaches the process via init"


def test_metrics_ports_are_never_published_and_listen_on_loopback_by_default() -> None:
    assert Settings(_env_file=None).worker_metrics_host == "127.0.0.1"  # type: ignore[call-arg]
    worker = load(BASE)["services"]["worker"]
    assert "ports" not in worker
    assert env(worker)["NOTIFYQ_WORKER_METRICS_HOST"] == "0.0.0.0"  # noqa: S104 - the compose network


# -- the sandbox overlay ---------------------------------------------------------------------


def test_the_sandbox_lives_in_the_overlay_and_every_provider_points_at_it() -> None:
    overlay = load(SANDBOX)["services"]
    assert "sandbox" in overlay
    assert overlay["sandbox"]["healthcheck"]["test"]
    for name in ("api", "worker", "beat"):
        urls = {k: v for k, v in env(overlay[name]).items() if k.endswith("_BASE_URL")}
        assert set(urls) == {
            f"NOTIFYQ_{p}_BASE_URL"
            for p in ("IHUYI", "JUMDATA", "APISPACE", "APISPACE_REPORT", "ITNIOTECH")
        }
        assert set(urls.values()) == {"http://sandbox:9000"}, name
    for name in ("api", "worker"):
        assert overlay[name]["depends_on"]["sandbox"]["condition"] == "service_healthy"
    assert "change-me" not in SANDBOX.read_text()


# -- observability ---------------------------------------------------------------------------


def test_the_observability_profile_scrapes_api_and_workers_and_provisions_the_dashboard() -> None:
    services = load(BASE)["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
    prometheus = load(ROOT / "deploy" / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    api = jobs["notifyq-api"]
    assert api["static_configs"][0]["targets"] == ["api:8000"]
    assert api["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    assert "metrics_token" in services["prometheus"]["secrets"]
    assert load(BASE)["secrets"]["metrics_token"]["environment"] == "NOTIFYQ_METRICS_TOKEN"
    workers = jobs["notifyq-worker"]["dns_sd_configs"][0]
    assert workers["names"] == ["worker"] and workers["port"] == 9808
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"] if v.startswith("./"))
    provider = load(ROOT / "deploy/grafana/provisioning/dashboards/notifyq.yml")["providers"][0]
    folder = provider["options"]["path"]
    assert mounts["./deploy/grafana/dashboards"] == folder
    assert (ROOT / "deploy/grafana/dashboards/notifyq.json").exists()


# -- the image -------------------------------------------------------------------------------


def test_the_image_runs_unprivileged_and_can_write_its_var_directory() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    # every package the wheel ships (pyproject's list) is copied into the image
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    packages = [pattern.rstrip("*") for pattern in include]
    assert "store" in packages and "sandbox" in packages, packages
    for package in packages:
        assert f"COPY {package} {package}" in dockerfile
    assert "constraints.txt" in dockerfile
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), users
    assert re.search(rf"install -d -o {users[-1]} -g {users[-1]} .*/app/var", dockerfile)
    assert dockerfile.index("/app/var") < dockerfile.index(f"USER {users[-1]}")


def test_every_notifyq_service_runs_a_command_that_exists() -> None:
    services = {**load(BASE)["services"], "sandbox": load(SANDBOX)["services"]["sandbox"]}
    for name, service in services.items():
        if "command" not in service or name in ("redis", "postgres", "prometheus"):
            continue
        command = service["command"]
        words = command if isinstance(command, list) else shlex.split(command)
        subcommand = [w for w in words if not w.startswith("-")][:2]
        probe = subprocess.run(
            [NOTIFYQ, subcommand[0], "--help"], capture_output=True, text=True, timeout=60
        )
        assert probe.returncode == 0, f"{name}: `notifyq {subcommand[0]}` does not exist"


# -- docker compose itself, where it is installed ---------------------------------------------


def compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not compose_plugin(), reason="the docker compose plugin is not installed")
def test_docker_compose_accepts_both_files_and_refuses_without_secrets(tmp_path: Path) -> None:
    bare = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}
    refused = subprocess.run(
        ["docker", "compose", "-f", str(BASE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=bare,
        timeout=60,
    )
    assert refused.returncode != 0 and "required variable" in refused.stderr.lower(), refused
    filled = {**bare, **{name: "x" for name in REQUIRED_SECRETS}, "NOTIFYQ_PUBLIC_URL": "https://x"}
    for files in (["-f", str(BASE)], ["-f", str(BASE), "-f", str(SANDBOX)]):
        answer = subprocess.run(
            ["docker", "compose", *files, "--profile", "observability", "config", "--quiet"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=filled,
            timeout=60,
        )
        assert answer.returncode == 0, answer.stderr

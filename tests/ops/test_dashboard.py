"""The Grafana dashboard cannot rot: a running system (API, a worker, beat, the sandbox)
sends, retries, defers and receives receipts; then every /metrics endpoint is read (the
API's with the metrics-only token, as Prometheus does in compose) and every metric the
dashboard queries must be there, with every label it groups by. A worker's metrics
listen on loopback unless a setting says otherwise."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tasks.enqueue import enqueue
from tests.conftest import System
from tests.services import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "notifyq.json"
METRIC = re.compile(r"\bnotifyq_[a-z0-9_]+")
GROUPED_BY = re.compile(r"\bby \(([^)]*)\)")
SCRAPE_TOKEN = "scrape-only-token-5d1e"
WORKER_PORT = re.compile(r"worker metrics on http://([0-9.]+):(\d+)/metrics")


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def samples(text: str) -> dict[str, set[str]]:
    """Each sample name in an exposition, with the label names it carries."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def worker_endpoints(system: System) -> list[tuple[str, int]]:
    found = []
    for proc in system.stack.procs:
        if proc.name == "worker":
            match = WORKER_PORT.search(proc.text())
            assert match, f"the worker did not say where its metrics are:\n{proc.text()[-2000:]}"
            found.append((match[1], int(match[2])))
    return found


def listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at ``port`` (from /proc/net/tcp)."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                addresses.add(address)
    return addresses


def test_every_metric_the_dashboard_queries_is_served(make_system: Any) -> None:
    system: System = make_system(
        ops_routes_need_key="true", metrics_token=SCRAPE_TOKEN, retry_base="0.3", retry_max="1"
    )
    system.start(workers=1, concurrency=4, beat=True)
    system.sandbox_config(fail_first={"ihuyi": 1})  # one retry
    rt = system.runtime
    # one number twice: the second waits for ihuyi's 1/second cap (a deferral)
    sent = [
        enqueue("ihuyi", "13800138000", content="您的快递已到。", runtime=rt),
        enqueue("ihuyi", "13800138000", content="您的快递已到！", runtime=rt),
        enqueue("jumdata", "13700137000", template="1001", params=["9633"], runtime=rt),
    ]
    # and one that waits an hour, so something is deferred when the metrics are read
    enqueue("ihuyi", "13900139000", content="明天见。", not_before=time.time() + 3600, runtime=rt)
    system.wait_for([s.id for s in sent], {"delivered"}, timeout=60)

    api = f"{system.api_url}/metrics"
    assert httpx.get(api, timeout=10).status_code == 401  # behind the key, as in compose
    scrape = {"Authorization": f"Bearer {SCRAPE_TOKEN}"}
    served = samples(httpx.get(api, headers=scrape, timeout=30).text)
    endpoints = worker_endpoints(system)
    assert endpoints
    for host, port in endpoints:
        assert host == "127.0.0.1"
        assert listening_addresses(port) <= {"0100007F"}, "a worker's metrics beyond loopback"
        for name, labels in samples(
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        ).items():
            served.setdefault(name, set()).update(labels)

    missing = []
    for expr in queries():
        names = set(METRIC.findall(expr))
        for name in names:
            if name not in served:
                missing.append(f"{name} (in {expr})")
        grouped = {
            label.strip()
            for clause in GROUPED_BY.findall(expr)
            for label in clause.split(",")
            if label.strip()
        }
        carried = set().union(*(served.get(n, set()) for n in names))
        for label in grouped - carried:
            missing.append(f"label {label} on {sorted(names)} (in {expr})")
    assert not missing, "the dashboard queries what no endpoint serves:\n" + "\n".join(missing)

    # the values behind the panels say what happened, per provider
    api_text = httpx.get(api, headers=scrape, timeout=30).text
    per_provider = {
        (s.labels.get("provider"), s.labels.get("status")): s.value
        for family in text_string_to_metric_families(api_text)
        if family.name == "notifyq_ledger_transitions"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert per_provider.get(("ihuyi", "delivered")) == 2, per_provider
    assert per_provider.get(("jumdata", "delivered")) == 1, per_provider
    assert per_provider.get(("ihuyi", "retrying"), 0) >= 1, per_provider
    assert "all" not in {p for p, _ in per_provider}


def test_worker_metrics_listen_wider_only_when_a_setting_says_so(
    make_system: Any,
) -> None:
    system: System = make_system(worker_metrics_host="0.0.0.0")  # noqa: S104 - what compose sets
    system.start(workers=1, concurrency=2, api=False)
    ((host, port),) = worker_endpoints(system)
    assert host == "0.0.0.0"  # noqa: S104
    wait_until(lambda: listening_addresses(port), 10, what="the metrics socket")
    assert "00000000" in listening_addresses(port)

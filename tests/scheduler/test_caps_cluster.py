"""The caps scripts on a real 3-node Redis Cluster, through redis-py's ``RedisCluster``;
and a runtime whose caps live on a cluster or behind a Sentinel (NOTIFYQ_CAPS_REDIS_URL).

docs/capacity.md says the per-number caps can be sharded across a Redis Cluster: every
script touches one key, the number's bucket ``nq:cap:<provider>:{b<k>}``, whose hash tag
puts all of a number's state on one slot. This proves it: numbers spread over all three
nodes, each
decision is the one a single Redis gives (caps, exact retry time, refund, the provider's
block, re-admission), and the pipelined ``hit_many`` that dispatch uses routes each
number's EVALSHA to its own node in one call.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from config.settings import Settings
from scheduler.caps import PROVIDER_BLOCK, CapCheck, CapLimiter, cap_slot, legacy_key
from scheduler.limits import parse_caps
from tasks.runtime import Runtime
from tests.conftest import TEST_CREDENTIALS
from tests.services import RedisServer, free_port, sentinel_watching, wait_until

IHUYI = parse_caps("1/second;3/minute;10/day")
NODES = 3

pytestmark = pytest.mark.skipif(
    shutil.which("redis-cli") is None or shutil.which("redis-server") is None,
    reason="redis-cli/redis-server not installed: cannot create a local Redis Cluster",
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """Three cluster-enabled redis-servers on free ports (bus ports chosen too, since
    port + 10000 may not exist), joined with ``redis-cli --cluster create``."""
    directory = tmp_path_factory.mktemp("cluster")
    ports = [free_port() for _ in range(NODES)]
    procs = []
    try:
        for port in ports:
            node = directory / str(port)
            node.mkdir()
            procs.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(port),
                        "--cluster-port",
                        str(free_port()),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(node / "nodes.conf"),
                        "--cluster-node-timeout",
                        "5000",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(node),
                        "--logfile",
                        str(node / "redis.log"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in ports:
            wait_until(
                lambda port=port: _cli(port, "ping").stdout.strip() == "PONG",
                10,
                what=f"redis node {port}",
            )
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        for port in ports:
            wait_until(
                lambda port=port: "cluster_state:ok" in _cli(port, "cluster", "info").stdout,
                30,
                what=f"cluster state ok at {port}",
            )
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def _cli(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
    )


@pytest.fixture
def client(cluster: list[int]) -> Iterator[RedisCluster]:
    c = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster])
    c.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield c
    c.close()


def number(i: int) -> str:
    return f"+86139{i:08d}"


def test_numbers_spread_over_every_node_and_each_decides_as_on_one_redis(
    client: RedisCluster,
) -> None:
    caps = CapLimiter(client, margin=0)  # type: ignore[arg-type]
    numbers = [number(i) for i in range(60)]
    for n in numbers:
        before = caps.hit("ihuyi", n, IHUYI)
        again = caps.hit("ihuyi", n, IHUYI)  # a moment later: the 1/second cap refuses
        assert before.allowed and not again.allowed
        assert again.cap == "1/second" and again.retry_at is not None
        assert 0 < again.retry_at - before.now <= 1.001

    owners = {client.get_node_from_key(cap_slot("ihuyi", n)[0]).port for n in numbers}
    assert owners == {node.port for node in client.get_primaries()}  # all three hold caps
    for n in numbers:  # each number's whole state is one field, on the node of its slot
        node = client.get_node_from_key(cap_slot("ihuyi", n)[0])
        with redis.Redis(host="127.0.0.1", port=node.port) as direct:
            assert direct.hexists(*cap_slot("ihuyi", n))


def test_keys_of_the_old_layout_count_on_a_cluster_and_the_sweep_runs_per_node(
    client: RedisCluster,
) -> None:
    """The old layout's key and the number's bucket are on different slots: the old log
    is read outside the script and handed to it, so nothing crosses a slot."""
    caps = CapLimiter(client, margin=0)  # type: ignore[arg-type]
    seconds, micros = client.time()  # type: ignore[misc]
    now_ms = seconds * 1000 + micros // 1000
    old = now_ms - 30_000
    client.set(legacy_key("ihuyi", number(1)), (old).to_bytes(6, "big") + bytes([0, 0]), px=60_000)
    assert client.keyslot(legacy_key("ihuyi", number(1))) != client.keyslot(
        cap_slot("ihuyi", number(1))[0]
    )
    refused = caps.hit("ihuyi", number(1), IHUYI)
    assert (refused.allowed, refused.cap) == (False, "3/minute")
    assert refused.retry_at == (old + 60_000) / 1000
    (batched,) = caps.hit_many([CapCheck("ihuyi", number(1), IHUYI)])
    assert batched.cap == "3/minute"
    assert caps.hit("ihuyi", number(2), IHUYI).allowed
    assert caps.sweep("ihuyi", IHUYI, 0) == 0  # one script a bucket, each on its node


def test_hit_many_pipelines_across_slots_and_refund_and_block_touch_one_slot(
    client: RedisCluster,
) -> None:
    caps = CapLimiter(client, margin=0)  # type: ignore[arg-type]
    checks = [CapCheck("ihuyi", number(i), IHUYI) for i in range(100, 150)]
    decisions = caps.hit_many(checks)
    assert all(d.allowed for d in decisions)
    refused = caps.hit_many(checks)
    assert [d.cap for d in refused] == ["1/second"] * len(checks)

    # a refunded attempt frees its slot: the number is admitted again at once
    assert caps.refund("ihuyi", checks[0].number, decisions[0])
    assert caps.hit("ihuyi", checks[0].number, IHUYI).allowed
    # re-admission (refund + hit) of a batch spread over the nodes
    readmitted = caps.readmit(list(zip(checks[1:], decisions[1:], strict=True)))
    assert all(d.allowed for d in readmitted)

    # the provider's own block, on the number's node
    until = caps.block("ihuyi", checks[5].number, 30)
    blocked = caps.hit("ihuyi", checks[5].number, IHUYI)
    assert not blocked.allowed and blocked.cap == PROVIDER_BLOCK
    assert blocked.retry_at == pytest.approx(until, abs=0.002)


def test_three_per_minute_holds_across_the_cluster_with_exact_retry_times(
    client: RedisCluster,
) -> None:
    caps = CapLimiter(client, margin=0)  # type: ignore[arg-type]
    taken = []
    for n in (number(7), number(8), number(9)):  # likely on different nodes
        for _ in range(3):
            decision = caps.hit("ihuyi", n, IHUYI)
            while not decision.allowed:  # 1/second: wait exactly as long as told
                assert decision.cap == "1/second" and decision.retry_at is not None
                time.sleep(max(0.0, decision.retry_at - decision.now) + 0.005)
                decision = caps.hit("ihuyi", n, IHUYI)
            taken.append((n, decision))
        fourth = caps.hit("ihuyi", n, IHUYI)
        first = next(d for m, d in taken if m == n)
        if not fourth.allowed and fourth.cap == "1/second":
            time.sleep(max(0.0, (fourth.retry_at or 0) - fourth.now) + 0.005)
            fourth = caps.hit("ihuyi", n, IHUYI)
        assert not fourth.allowed and fourth.cap == "3/minute"
        assert fourth.retry_at == pytest.approx(first.now + 60, abs=0.002)


def test_a_script_missing_on_a_node_is_loaded_there_and_nothing_is_recorded_twice(
    client: RedisCluster,
) -> None:
    caps = CapLimiter(client, margin=0)  # type: ignore[arg-type]
    checks = [CapCheck("ihuyi", number(i), IHUYI) for i in range(200, 230)]
    assert all(d.allowed for d in caps.hit_many(checks))
    for node in client.get_primaries():  # as after a restart of every node
        with redis.Redis(host="127.0.0.1", port=node.port) as direct:
            direct.script_flush()
    refused = caps.hit_many(checks)  # NOSCRIPT everywhere: loaded, sent again
    assert [d.cap for d in refused] == ["1/second"] * len(checks)


# -- the caps client from NOTIFYQ_CAPS_REDIS_URL (tasks/runtime.py, scheduler/connect.py) --


def runtime_with_caps_at(caps_url: str, tmp_path: Path, redis_url: str) -> Runtime:
    values = {k.removeprefix("NOTIFYQ_").lower(): v for k, v in TEST_CREDENTIALS.items()}
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'notifyq.db'}",
        redis_url=redis_url,
        caps_redis_url=caps_url,
        **values,
    )
    return Runtime.build(settings)


def test_a_runtime_keeps_its_caps_on_the_cluster_named_by_a_cluster_url(
    cluster: list[int], client: RedisCluster, tmp_path: Path, redis_url: str
) -> None:
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in cluster[:2])
    rt = runtime_with_caps_at(url, tmp_path, redis_url)
    try:
        checks = [CapCheck("ihuyi", number(i), IHUYI) for i in range(300, 330)]
        assert all(d.allowed for d in rt.caps.hit_many(checks))
        assert not any(d.allowed for d in rt.caps.hit_many(checks))
        assert not redis.Redis.from_url(redis_url).keys("nq:cap:*")  # none on the broker
        held = 0
        for port in cluster:
            node = redis.Redis(host="127.0.0.1", port=port)
            held += sum(node.hlen(key) for key in node.keys("nq:cap:*"))
        assert held == len(checks)
    finally:
        rt.close()


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[int, RedisServer]]:
    """One Redis master and one Sentinel watching it as ``nqcaps`` (quorum 1)."""
    with sentinel_watching(tmp_path, "nqcaps") as started:
        yield started


def test_a_runtime_finds_the_caps_master_through_a_sentinel(
    sentinel: tuple[int, RedisServer], tmp_path: Path, redis_url: str
) -> None:
    port, master = sentinel
    rt = runtime_with_caps_at(f"sentinel://127.0.0.1:{port}/nqcaps/0", tmp_path, redis_url)
    try:
        first = rt.caps.hit("ihuyi", number(1), IHUYI)
        again = rt.caps.hit("ihuyi", number(1), IHUYI)
        assert first.allowed and not again.allowed and again.cap == "1/second"
        direct = redis.Redis.from_url(master.url)
        assert direct.hexists(*cap_slot("ihuyi", number(1)))  # on the master it named
    finally:
        rt.close()

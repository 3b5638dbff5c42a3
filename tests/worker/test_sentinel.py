"""The broker (and the runtime's own Redis) behind Sentinel: NOTIFYQ_REDIS_URL in either
spelling — notifyq's ``sentinel://h1:26379,h2:26379/<service>/<db>`` or kombu's
``sentinel://h1:26379;sentinel://h2:26379`` with NOTIFYQ_REDIS_SENTINEL_MASTER — becomes
kombu's URL and ``master_name`` in the Celery configuration (worker/app.py), and
against a real master and Sentinel (``redis-server --sentinel``) a dispatch message
published and consumed through the Sentinel lands on that master."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pydantic import ValidationError

from config.settings import SentinelRedis, Settings, parse_sentinel
from tasks.runtime import Runtime
from tests.conftest import TEST_CREDENTIALS
from tests.services import RedisServer, sentinel_watching
from worker.app import VISIBILITY_TIMEOUT, celery_config, make_celery
from worker.queues import DISPATCH_QUEUE

SERVICE = "nqbroker"


def settings(redis_url: str, master: str = "", **more: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, redis_url=redis_url, redis_sentinel_master=master, **more
    )


# -- the configuration ---------------------------------------------------------------------


def test_a_plain_redis_url_is_the_broker_as_it_is() -> None:
    config = celery_config(settings("redis://127.0.0.1:6390/3"))
    assert config["broker_url"] == "redis://127.0.0.1:6390/3"
    options = config["broker_transport_options"]
    assert options["visibility_timeout"] == VISIBILITY_TIMEOUT
    assert "master_name" not in options
    assert settings("redis://127.0.0.1:6390/3").redis_client_url == "redis://127.0.0.1:6390/3"


@pytest.mark.parametrize(
    ("url", "master"),
    [
        ("sentinel://:p%40ss@s1:26379,s2:26380/nqbroker/2", ""),
        ("sentinel://:p%40ss@s1:26379,s2:26380/nqbroker/2", "nqbroker"),
        ("sentinel://:p%40ss@s1:26379/2;sentinel://s2:26380/2", "nqbroker"),
        ("sentinel://:p%40ss@s1:26379/2; sentinel://s2:26380", "nqbroker"),
    ],
)
def test_either_sentinel_spelling_gives_kombu_its_urls_and_master_name(
    url: str, master: str
) -> None:
    given = settings(url, master)
    assert given.sentinel == SentinelRedis((("s1", 26379), ("s2", 26380)), "nqbroker", 2, "p@ss")
    config = celery_config(given)
    assert config["broker_url"] == "sentinel://:p%40ss@s1:26379/2;sentinel://:p%40ss@s2:26380/2"
    options = config["broker_transport_options"]
    assert options["master_name"] == "nqbroker"
    assert options["visibility_timeout"] == VISIBILITY_TIMEOUT
    # the runtime's own client reads the form scheduler/connect.py knows
    assert given.redis_client_url == "sentinel://:p%40ss@s1:26379,s2:26380/nqbroker/2"


def test_a_sentinel_url_without_its_service_or_with_another_stops_start_up() -> None:
    with pytest.raises(ValidationError, match="NOTIFYQ_REDIS_SENTINEL_MASTER"):
        settings("sentinel://s1:26379;sentinel://s2:26379")
    with pytest.raises(ValidationError, match="names the service"):
        settings("sentinel://s1:26379/nqbroker", "other")
    with pytest.raises(ValueError, match="every part"):
        parse_sentinel("sentinel://s1:26379;redis://s2:6379", "nqbroker")
    assert parse_sentinel("redis://s1:6379/0") is None
    assert parse_sentinel("sentinel://s1/nq") == SentinelRedis((("s1", 26379),), "nq", 0, None)


# -- a real Sentinel -----------------------------------------------------------------------


needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server not installed"
)


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[int, RedisServer]]:
    """One Redis master and one Sentinel watching it as ``nqbroker`` (quorum 1)."""
    with sentinel_watching(tmp_path, SERVICE) as started:
        yield started


@needs_redis
@pytest.mark.parametrize("spelling", ["notifyq", "kombu"])
def test_dispatch_messages_go_through_the_sentinel_to_its_master(
    sentinel: tuple[int, RedisServer], spelling: str
) -> None:
    port, master = sentinel
    if spelling == "notifyq":
        given = settings(f"sentinel://127.0.0.1:{port}/{SERVICE}/0")
    else:
        given = settings(f"sentinel://127.0.0.1:{port};sentinel://127.0.0.1:{port}", SERVICE)
    app = make_celery(given)
    app.send_task("notifyq.dispatch", args=[[41, 42]], queue=DISPATCH_QUEUE)
    direct = redis.Redis.from_url(master.url)
    assert direct.llen(DISPATCH_QUEUE) == 1  # on the master the Sentinel named
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(DISPATCH_QUEUE)
        message = queue.get(timeout=10)
        assert message.headers["task"] == "notifyq.dispatch"
        assert message.decode()[0] == [[41, 42]]
        message.ack()
        queue.close()
    assert direct.llen(DISPATCH_QUEUE) == 0


@needs_redis
def test_a_runtime_on_a_sentinel_url_keeps_its_state_and_publishes_on_the_master(
    sentinel: tuple[int, RedisServer], tmp_path: Path
) -> None:
    port, master = sentinel
    values = {k.removeprefix("NOTIFYQ_").lower(): v for k, v in TEST_CREDENTIALS.items()}
    given = settings(
        f"sentinel://127.0.0.1:{port}/{SERVICE}/0",
        database_url=f"sqlite:///{tmp_path / 'notifyq.db'}",
        **values,
    )
    rt = Runtime.build(given)
    try:
        rt.deferred.add([(7, 1.0)])
        rt.celery.send_task("notifyq.dispatch", args=[[7]], queue=DISPATCH_QUEUE)
        direct = redis.Redis.from_url(master.url)
        assert direct.zcard("nq:deferred") == 1
        assert direct.llen(DISPATCH_QUEUE) == 1
        assert rt.redis_now() > 0
    finally:
        rt.close()

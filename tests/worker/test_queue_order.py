"""The order a worker takes the broker's queues in (worker/queues.py), through kombu's
real Redis transport and a real Redis: whatever was published first, the control queue
is taken first, then urgent, then normal, then bulk — in every process, whatever its
hash seed (kombu's own ``priority`` strategy lists the queues in set order)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from kombu import Consumer, Queue

from tests.conftest import embedded_settings
from worker.app import make_celery
from worker.queues import (
    BULK_QUEUE,
    CONTROL_QUEUE,
    NORMAL_QUEUE,
    QUEUES,
    URGENT_QUEUE,
    InTableOrder,
)


def test_the_cycle_lists_the_queues_in_the_tables_order_whatever_it_is_given() -> None:
    cycle = InTableOrder()
    cycle.update({*reversed(QUEUES), "other"})
    assert cycle.consume(len(QUEUES) + 1) == [*QUEUES, "other"]
    cycle.rotate(CONTROL_QUEUE)  # kombu rotates after each message: the order stays
    assert cycle.consume(len(QUEUES) + 1) == [*QUEUES, "other"]


def taken_order(redis_url: str, published: list[str]) -> list[str]:
    """Publish one message a queue in ``published``'s order, then take them one at a
    time (prefetch 1, each acknowledged before the next, as a worker's thread does) and
    say which queue each came from."""
    app = make_celery(embedded_settings("sqlite://", redis_url))
    with app.connection_for_write() as conn:
        producer = conn.Producer()
        for queue in published:
            producer.publish({"q": queue}, routing_key=queue, declare=[Queue(queue)])
    taken: list[str] = []
    with app.connection_for_read() as conn:
        channel = conn.channel()
        channel.basic_qos(0, 1, False)

        def got(body: dict[str, str], message: object) -> None:
            taken.append(body["q"])
            message.ack()  # type: ignore[attr-defined]

        with Consumer(channel, [Queue(q) for q in QUEUES], callbacks=[got], accept=["json"]):
            while len(taken) < len(published):
                conn.drain_events(timeout=5)
    return taken


def test_urgent_is_taken_before_normal_before_bulk_already_queued(redis_url: str) -> None:
    published = [BULK_QUEUE] * 5 + [NORMAL_QUEUE] * 2 + [URGENT_QUEUE] * 2 + [CONTROL_QUEUE]
    assert taken_order(redis_url, published) == (
        [CONTROL_QUEUE] + [URGENT_QUEUE] * 2 + [NORMAL_QUEUE] * 2 + [BULK_QUEUE] * 5
    )


@pytest.mark.parametrize("seed", ["1", "2"])
def test_the_order_holds_in_any_process_whatever_its_hash_seed(redis_url: str, seed: str) -> None:
    """kombu builds its list from a set: the order must not come from string hashes."""
    script = (
        "import sys; from tests.worker.test_queue_order import taken_order; "
        "print(','.join(taken_order(sys.argv[1], sys.argv[2].split(','))))"
    )
    published = ",".join(reversed(QUEUES))
    done = subprocess.run(
        [sys.executable, "-c", script, redis_url, published],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": seed},
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == ",".join(QUEUES)

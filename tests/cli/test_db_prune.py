"""``notifyq db prune [--dry-run]`` with the clock moved past the retention: the dry run
counts and deletes nothing, the run deletes what it counted, the recent row stays."""

from __future__ import annotations

import json

from store import Change, Expect, NewNotification, Status
from store.retention import DAY
from tests.conftest import System


def test_prune_counts_then_deletes_what_ended_before_the_retention(make_system) -> None:
    system: System = make_system(clock_control="true", retention_days="30")
    rt = system.runtime
    old = rt.notifications.insert([NewNotification(provider="ihuyi", to="+8613800138000")])
    for made in old:
        row = rt.notifications.get(made.id)
        rt.notifications.transition(
            [Change(made.id, Status.CANCELLED, Expect.row(row))], now=system.now()
        )
    system.advance(31 * DAY)
    (recent,) = rt.notifications.insert(
        [NewNotification(provider="ihuyi", to="+8613900139000")], now=system.now()
    )

    dry = system.cli("db", "prune", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    counted = json.loads(dry.stdout)
    assert (counted["dry_run"], counted["notifications"], counted["events"]) == (True, 1, 1)
    assert rt.notifications.get(old[0].id) is not None

    done = system.cli("db", "prune")
    assert done.returncode == 0, done.stderr
    assert "deleted (older than 30 days): 1 notification(s) with 1 event(s)" in done.stdout
    assert rt.notifications.get(old[0].id) is None
    assert rt.notifications.get(recent.id) is not None

"""A provider added from outside the product: its module (tests/providers/toy.py) and one
``notifyq.providers`` entry point, as a package of its own would declare it, and
nothing else. ``notifyq send toy …`` → the store → Redis → a real worker → real HTTP to
a server in this test → ``sent``, with the toy's own ``NOTIFYQ_TOY_*`` settings."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.names import misspelt
from config.settings import Settings
from harness.receiver import WebhookReceiver
from providers import registry
from tests.conftest import System
from tests.providers.toy import Toy, ToySettings

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("api", "cli", "config", "harness", "observe", "providers", "scheduler", "store")
PRODUCT += ("tasks", "webhooks", "worker")
TOKEN = "toy-token-4d2c"


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on the path holding the toy's one registry entry: the metadata an
    installed package ``notifyq-toy`` would carry."""
    folder = tmp_path / "plugins"
    meta = folder / "notifyq_toy-1.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: notifyq-toy\nVersion: 1.0\n")
    (meta / "entry_points.txt").write_text("[notifyq.providers]\ntoy = tests.providers.toy:ENTRY\n")
    monkeypatch.syspath_prepend(str(folder))
    registry.entries.cache_clear()
    yield folder
    monkeypatch.undo()
    registry.entries.cache_clear()


@pytest.fixture
def toy_api() -> Iterator[WebhookReceiver]:
    """The toy's API on a loopback port: it places every call it is sent."""
    api = WebhookReceiver(lambda _: 200).start()
    yield api
    api.stop()


def test_the_product_names_no_toy() -> None:
    """What the toy needs of the product is already there: no product file names it."""
    word = re.compile(r"\btoy\b|TOY_", re.IGNORECASE)
    named = [
        str(path.relative_to(ROOT))
        for package in PRODUCT
        for path in (ROOT / package).rglob("*.py")
        if word.search(path.read_text())
    ]
    assert named == []


@pytest.mark.usefixtures("plugins")
def test_the_toys_settings_are_read_by_their_own_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFYQ_TOY_TOKEN", TOKEN)
    monkeypatch.setenv("NOTIFYQ_TOY_WINDOW", "08:00-20:00")
    monkeypatch.setenv("NOTIFYQ_TOY_RATE", "5/second")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    group = settings.provider("toy", ToySettings)
    assert group.token is not None and group.token.get_secret_value() == TOKEN
    policy = settings.policy("toy")
    assert policy.window is not None and policy.rate and not policy.caps
    assert isinstance(registry.build("toy", settings), Toy)
    assert "toy" in registry.names()
    assert misspelt(["NOTIFYQ_TOY_TOKEN", "NOTIFYQ_TOY_TOKN"])[0].closest == "NOTIFYQ_TOY_TOKEN"
    with pytest.raises(ValueError, match="toy_window"):
        Settings(_env_file=None, toy_window="25:00-26:00")  # type: ignore[call-arg]


@pytest.mark.slow
def test_a_toy_send_goes_through_a_real_worker_to_its_api(
    plugins: Path, toy_api: WebhookReceiver, make_system: Any
) -> None:
    system: System = make_system(
        toy_base_url=f"http://127.0.0.1:{toy_api.port}", toy_token=TOKEN, toy_caps=""
    )
    # the processes find the toy as they would an installed package's
    system.env["PYTHONPATH"] = f"{plugins}:{ROOT}"
    system.stack.worker("--concurrency", "2")
    sent = system.cli("send", "toy", "--to", "13800138000", "--content", "hello")
    assert sent.returncode == 0, sent.stderr
    notification_id = int(sent.stdout)
    system.wait_for([notification_id], {"sent"})
    (call,) = toy_api.snapshot()
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(call.body) == {"id": notification_id, "to": "+8613800138000", "text": "hello"}
    assert (
        system.runtime.notifications.get(notification_id).provider_ref == f"toy-{notification_id}"
    )

"""Which providers a worker would call at their live address without credentials, and
the settings it names: the very ones each provider's client refuses to send without."""

from __future__ import annotations

import pytest

from config.live import Unconfigured, credential_settings, live_without_credentials
from config.settings import Settings
from providers import registry
from providers.base import Message, MissingCredentials
from tests.conftest import TEST_CREDENTIALS

MESSAGE = Message(1, "+8613800138000", template="1", content="您的验证码是{$var}", params=("1",))


def credentials(without: str = "") -> Settings:
    values = {k.removeprefix("NOTIFYQ_").lower(): v for k, v in TEST_CREDENTIALS.items()}
    values.pop(without, None)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_every_provider_at_its_live_address_without_credentials_is_named() -> None:
    bare = Settings(_env_file=None)  # type: ignore[call-arg]
    found = live_without_credentials(bare)
    assert [u.provider for u in found] == list(registry.NAMES)
    assert Unconfigured("ihuyi", ("NOTIFYQ_IHUYI_ACCOUNT", "NOTIFYQ_IHUYI_APIKEY")) in found
    assert live_without_credentials(credentials()) == []


def test_a_provider_pointed_elsewhere_is_its_servers_business() -> None:
    elsewhere = Settings(_env_file=None, ihuyi_base_url="http://127.0.0.1:9000")  # type: ignore[call-arg]
    assert "ihuyi" not in [u.provider for u in live_without_credentials(elsewhere)]


@pytest.mark.parametrize("provider", registry.NAMES)
def test_the_names_are_those_the_client_refuses_to_send_without(provider: str) -> None:
    """Each credential named, taken away alone, stops the client naming that setting;
    with all of them the client builds its request."""
    names = credential_settings(provider)
    for name in names:
        client = registry.build(provider, credentials(without=name))
        with pytest.raises(MissingCredentials) as refused:
            client.build_send([MESSAGE], 1_800_000_000.0)
        assert refused.value.setting == f"NOTIFYQ_{name.upper()}"
    registry.build(provider, credentials()).build_send([MESSAGE], 1_800_000_000.0)

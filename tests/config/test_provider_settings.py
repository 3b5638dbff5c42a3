"""Each provider's settings are read by their own ``NOTIFYQ_*`` names into the group its
module declares: from the environment, else ``.env``, a keyword first; a value that
does not parse stops start-up naming its setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from config.settings import Settings
from providers.apispace import ApispaceSmsSettings, ApispaceVoiceSettings
from providers.ihuyi import IhuyiSettings
from providers.registry import UnknownProvider


def test_the_flat_names_fill_each_group(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("NOTIFYQ_IHUYI_ACCOUNT=from-file\nNOTIFYQ_APISPACE_TOKEN=tok\n")
    monkeypatch.setenv("NOTIFYQ_IHUYI_ACCOUNT", "from-env")
    monkeypatch.setenv("notifyq_jumdata_window", "")
    monkeypatch.setenv("NOTIFYQ_ITNIOTECH_LOCAL_TIME", "true")
    settings = Settings(_env_file=env_file, ihuyi_base_url="http://here")  # type: ignore[call-arg]
    ihuyi = settings.provider("ihuyi", IhuyiSettings)
    assert (ihuyi.account, ihuyi.base_url) == ("from-env", "http://here")
    # one setting, two groups: both APISpace products sign with the same token
    voice = settings.provider("apispace-voice", ApispaceVoiceSettings)
    sms = settings.provider("apispace-sms", ApispaceSmsSettings)
    assert voice.token == sms.token == SecretStr("tok")
    assert settings.policy("jumdata").window is None
    assert settings.policy("itniotech").local_time
    assert settings.policy("apispace-sms").rate[0].text == "800/second"


def test_a_copy_may_change_a_providers_settings() -> None:
    settings = Settings(_env_file=None, ihuyi_account="a")  # type: ignore[call-arg]
    copy = settings.model_copy(update={"ihuyi_callback_token": SecretStr("own"), "timezone": "UTC"})
    assert copy.callback_secret("ihuyi") == SecretStr("own")
    assert copy.provider("ihuyi", IhuyiSettings).account == "a"
    assert settings.callback_secret("ihuyi") is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ihuyi_caps", "3/fortnight"),
        ("jumdata_window", "25:00-26:00"),
        ("itniotech_local_time", "x"),
    ],
)
def test_a_value_that_does_not_parse_names_its_setting(name: str, value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=None, **{name: value})  # type: ignore[call-arg]
    assert refused.value.errors()[0]["loc"] == (name,)


def test_an_unknown_provider_is_refused_by_name() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(UnknownProvider):
        settings.provider("nobody")
    with pytest.raises(TypeError):
        settings.provider("jumdata", IhuyiSettings)

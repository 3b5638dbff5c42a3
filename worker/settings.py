"""Every setting of notifyq, in one pydantic-settings object (prefix ``NOTIFYQ_``).

The object is built once at each edge — the CLI, the worker process, the API app — and
passed in; nothing below reads the environment. Credentials are ``SecretStr`` so a
``repr`` or a log line never shows them. Caps and windows are parsed here, at start-up,
so a typo stops the process instead of silently meaning "no cap".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from scheduler.limits import Cap, parse_caps
from scheduler.windows import CallingWindow, parse_window

PROVIDERS = ("apispace-voice", "apispace-sms", "ihuyi", "jumdata", "itniotech")
DEFAULT_NUMBER_CAPS = "1/second;3/minute;10/day"
#: windows kept on the provider's own clock, whatever NOTIFYQ_TIMEZONE says (jumdata's
#: 09:00-21:00 is Beijing time: providers/jumdata.py WINDOW_ZONE)
WINDOW_ZONES = {"jumdata": "Asia/Shanghai"}


@dataclass(frozen=True)
class ProviderPolicy:
    """When a provider may call a number: its caps, its window, its own throughput."""

    caps: tuple[Cap, ...]
    window: CallingWindow | None
    rate: tuple[Cap, ...]
    #: use the recipient's own time zone (from the number) for the window
    local_time: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NOTIFYQ_", env_file=".env", extra="ignore", frozen=True
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "sqlite:///var/notifyq.db"
    timezone: str = "Asia/Shanghai"
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    callback_token: SecretStr | None = None
    #: how providers reach our API (jumdata's notifyUrl is built from it)
    public_url: str = "http://127.0.0.1:8000"

    apispace_token: SecretStr | None = None
    apispace_base_url: str = "https://eolink.o.apispace.com"
    apispace_report_base_url: str = "https://cb.o.apispace.com"
    apispace_report_interval: float = 30.0
    apispace_report_page: int = Field(1000, ge=1, le=10000)

    ihuyi_account: str | None = None
    ihuyi_apikey: SecretStr | None = None
    ihuyi_base_url: str = "https://api.vm.ihuyi.com"

    jumdata_app_id: str | None = None
    jumdata_app_secret: SecretStr | None = None
    jumdata_base_url: str = "https://api.jumdata.com"

    itniotech_api_key: SecretStr | None = None
    itniotech_api_secret: SecretStr | None = None
    itniotech_app_id: str | None = None
    itniotech_base_url: str = "https://api.itniotech.com"

    # Per-number caps (limits notation), calling windows and provider-wide rates.
    apispace_voice_caps: str = DEFAULT_NUMBER_CAPS
    apispace_voice_window: str = ""
    apispace_voice_rate: str = ""
    apispace_sms_caps: str = DEFAULT_NUMBER_CAPS
    apispace_sms_window: str = ""
    apispace_sms_rate: str = "800/second"
    ihuyi_caps: str = DEFAULT_NUMBER_CAPS
    ihuyi_window: str = ""
    ihuyi_rate: str = ""
    jumdata_caps: str = "3/day"
    jumdata_window: str = "09:00-21:00"
    jumdata_rate: str = ""
    itniotech_caps: str = ""
    itniotech_window: str = ""
    itniotech_rate: str = ""
    itniotech_local_time: bool = False

    #: added to every cap window: a call admitted at t reaches the provider a little
    #: later and with jitter, and the provider counts arrivals, not our admissions
    cap_margin: float = Field(0.5, ge=0)

    on_ambiguous: Literal["unknown", "resend"] = "unknown"
    max_attempts: int = Field(5, ge=1, le=50)
    retry_base: float = Field(2.0, gt=0)
    retry_max: float = Field(300.0, gt=0, le=900)
    circuit_cooldown: float = Field(60.0, gt=0)
    #: re-drive waiting rows whose hand-off is older than this (lost broker message)
    sweep_grace: float = Field(120.0, gt=0)
    #: a row still ``sending`` after this long lost its worker mid-call
    sending_timeout: float = Field(120.0, gt=0)
    #: a ``sent`` row with no receipt after this long ends ``unknown``, saying so (72 h:
    #: providers push or report within a day; a later receipt still repairs it)
    receipt_timeout: float = Field(72 * 3600.0, gt=0)
    sweep_interval: float = Field(10.0, gt=0)
    pump_interval: float = Field(1.0, gt=0)
    #: notifications per dispatch task when many are released at once
    dispatch_batch: int = Field(50, ge=1, le=1000)
    #: keep at most this many dispatch messages waiting in the broker for campaigns
    release_high_water: int = Field(2000, ge=10)

    http_connect_timeout: float = 5.0
    http_read_timeout: float = 30.0
    http_write_timeout: float = 10.0
    http_pool_timeout: float = 10.0
    http_max_connections: int = 400

    #: threads (tuned by ``bench/dispatch.py``) or solo (debugging). Not gevent: provider
    #: HTTP runs on an asyncio loop thread and SQLite blocks, neither of which gevent's
    #: patching serves. Not prefork: the worker's HTTP pools and loop thread are built
    #: at start-up, and threads do not survive a fork; run more worker processes instead.
    worker_pool: Literal["threads", "solo"] = "threads"
    worker_concurrency: int = Field(64, ge=1)
    db_pool_size: int = Field(16, ge=1)
    #: each worker serves its own counters here (0 = any free port; unset = not served)
    worker_metrics_port: int | None = 9808
    callback_max_bytes: int = Field(64 * 1024, ge=1024)
    log_level: str = "INFO"
    #: honour the clock offset tests set in Redis (scheduler/clock.py); never in production
    clock_control: bool = False
    #: Celery's per-task lines (received, succeeded, retry): WARNING silences them at volume
    task_log_level: str = "INFO"

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _parse_policies(cls, value: object, info) -> object:  # type: ignore[no-untyped-def]
        name = info.field_name or ""
        if isinstance(value, str) and (name.endswith("_caps") or name.endswith("_rate")):
            parse_caps(value)
        if isinstance(value, str) and name.endswith("_window"):
            parse_window(value, ZoneInfo("UTC"))
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def policy(self, provider: str) -> ProviderPolicy:
        prefix = provider.replace("-", "_")
        return ProviderPolicy(
            caps=parse_caps(getattr(self, f"{prefix}_caps")),
            window=parse_window(
                getattr(self, f"{prefix}_window"),
                ZoneInfo(WINDOW_ZONES.get(provider, self.timezone)),
            ),
            rate=parse_caps(getattr(self, f"{prefix}_rate")),
            local_time=provider == "itniotech" and self.itniotech_local_time,
        )

    def callback_url(self, route: str) -> str | None:
        if self.callback_token is None:
            return None
        token = self.callback_token.get_secret_value()
        return f"{self.public_url.rstrip('/')}/callbacks/{token}/{route}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once (edges only)."""
    return Settings()

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
from urllib.parse import quote, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from scheduler.limits import Cap, parse_caps
from scheduler.windows import CallingWindow, parse_window

DEFAULT_NUMBER_CAPS = "1/second;3/minute;10/day"
#: windows kept on the provider's own clock, whatever NOTIFYQ_TIMEZONE says (jumdata's
#: 09:00-21:00 is Beijing time: providers/jumdata.py WINDOW_ZONE)
WINDOW_ZONES = {"jumdata": "Asia/Shanghai"}


@dataclass(frozen=True)
class SentinelRedis:
    """A Redis found through its Sentinels: who to ask, for which service, which db."""

    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    #: the master's (Sentinels are asked without one, as usually deployed)
    password: str | None = None

    def client_url(self) -> str:
        """The form ``scheduler.connect.redis_client`` (redis-py's Sentinel) reads."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        hosts = ",".join(f"{host}:{port}" for host, port in self.hosts)
        return f"sentinel://{auth}{hosts}/{self.service}/{self.db}"

    def kombu_url(self) -> str:
        """The form kombu's Redis transport reads (with ``master_name`` beside it)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return ";".join(f"sentinel://{auth}{host}:{port}/{self.db}" for host, port in self.hosts)


def parse_sentinel(url: str, master: str = "") -> SentinelRedis | None:
    """``url`` as a :class:`SentinelRedis`, or None if it is not a ``sentinel://`` URL.

    Two spellings: ``sentinel://[:pw@]h1:26379,h2:26379/<service>[/<db>]`` (notifyq's,
    as for the caps), and kombu's ``sentinel://[:pw@]h1:26379[/<db>];sentinel://h2:26379``
    whose service comes from ``master``. Raises ValueError for a Sentinel URL that names
    no service, or names another than ``master``."""
    parts = [p.strip() for p in url.split(";") if p.strip()]
    if not parts or not all(p.startswith("sentinel://") for p in parts):
        if any(p.startswith("sentinel://") for p in parts):
            raise ValueError("every part of a Sentinel URL is sentinel://host:port")
        return None
    hosts: list[tuple[str, int]] = []
    password: str | None = None
    service = ""
    db = 0
    for index, part in enumerate(parts):
        pieces = urlsplit(part)
        netloc = pieces.netloc
        if "@" in netloc:
            auth, netloc = netloc.rsplit("@", 1)
            secret = auth.split(":", 1)[1] if ":" in auth else auth
            password = password or unquote(secret) or None
        for spot in netloc.split(","):
            host, _, port = spot.rpartition(":")
            hosts.append((host, int(port)) if host else (spot, 26379))
        path = [p for p in pieces.path.split("/") if p]
        if index == 0 and path:
            if path[0].isdigit():
                db = int(path[0])
            else:
                service = path[0]
                db = int(path[1]) if len(path) > 1 else 0
    if service and master and service != master:
        raise ValueError(
            f"the Sentinel URL names the service {service!r}, "
            f"NOTIFYQ_REDIS_SENTINEL_MASTER {master!r}"
        )
    service = service or master
    if not service:
        raise ValueError(
            "a sentinel:// NOTIFYQ_REDIS_URL needs its service: "
            "sentinel://host:26379/<service> or NOTIFYQ_REDIS_SENTINEL_MASTER"
        )
    return SentinelRedis(tuple(hosts), service, db, password)


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

    #: the broker and the runtime's own Redis: ``redis://…``, or behind Sentinel either
    #: ``sentinel://[:password@]host:26379[,host:port]/<service>[/<db>]`` (as the caps)
    #: or kombu's ``sentinel://host:26379;sentinel://host2:26379`` with
    #: ``redis_sentinel_master`` naming the service (:attr:`sentinel`)
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: the Sentinel service (master name) of a ``sentinel://`` ``redis_url`` that does
    #: not name one itself
    redis_sentinel_master: str = ""
    #: the per-number caps on a Redis of their own (empty: ``redis_url``); also
    #: ``sentinel://host:26379[,host:port]/<service>[/<db>]`` or
    #: ``redis+cluster://host:port[,host:port]`` (scheduler/connect.py)
    caps_redis_url: str = ""
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
    #: later and with jitter, and the provider counts arrivals, not our admissions. It is
    #: also each call's deadline: one that cannot leave within it of its admission (no
    #: free connection, a slow connect) goes back to waiting instead of arriving late, so
    #: keep it above the time to connect to the provider (TLS included) when idle
    cap_margin: float = Field(0.5, gt=0)

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
    #: finished notifications (with their events and receipts), report pulls and
    #: verifications older than this many days are deleted (store/retention.py)
    retention_days: float = Field(90.0, gt=0)
    sweep_interval: float = Field(10.0, gt=0)
    pump_interval: float = Field(1.0, gt=0)
    #: notifications per dispatch task when many are released at once
    dispatch_batch: int = Field(50, ge=1, le=1000)
    #: seconds ``enqueue()`` gathers committed ids before publishing them as one dispatch
    #: message (tasks/publish.py); 0 publishes each call's id at once
    publish_linger: float = Field(0.01, ge=0, le=1.0)
    #: keep at most this many dispatch messages waiting in the broker for campaigns
    release_high_water: int = Field(2000, ge=10)
    #: seconds of campaign work kept in the broker, from the throughput measured
    #: (tasks/campaigns/pace.py): what a pause or a cancel has to wait out at most
    release_lead: float = Field(5.0, gt=1.0, le=60.0)
    #: the most of a worker's call budget, threads and connection pools, and of a burst of
    #: a provider's rate, that bulk (campaign) work may hold: the rest is always free for
    #: urgent and normal work (tasks/budget.py, scheduler/rates.py)
    bulk_share: float = Field(0.8, gt=0, le=1)

    http_connect_timeout: float = 5.0
    http_read_timeout: float = 30.0
    http_write_timeout: float = 10.0
    http_pool_timeout: float = 10.0
    http_max_connections: int = 400
    #: provider calls a worker process admits before earlier ones are answered; more wait
    #: *before* admission (tasks/budget.py), not in the HTTP pool past their deadline
    dispatch_in_flight: int = Field(200, ge=1)

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
    #: uvicorn's line per HTTP request in ``notifyq api``'s log: off by default, as under
    #: load it is a tenth of the API's CPU (bench/api.py); on to see which callback paths
    #: providers still use (docs/deployment.md), tokens masked
    api_access_log: bool = False
    #: honour the clock offset tests set in Redis (scheduler/clock.py); never in production
    clock_control: bool = False

    # -- verification codes and suppressions (tasks/verifications.py, tasks/suppressions.py)
    #: the key of every code's HMAC; without it no verification is created (a key made
    #: up per process would fail every check made on another host)
    verify_secret: SecretStr | None = None
    #: digits in a code (4-8; a request may ask for its own)
    verify_length: int = Field(6, ge=4, le=8)
    #: seconds a code is valid (a request may ask for 60 to 3600)
    verify_ttl: float = Field(600.0, ge=60, le=3600)
    #: wrong codes before a verification is ``too_many_attempts``
    verify_max_attempts: int = Field(5, ge=1, le=20)
    #: new codes one number may be sent, ``limits`` notation (answered 429 beyond them)
    verify_caps: str = "1/minute;5/hour"
    #: the SMS text (APISpace SMS: 【signature】 and {$var} where the code goes)
    verify_sms_text: str = "【notifyq】您的验证码是{$var}，10分钟内有效，请勿告诉他人。"
    #: the voice provider when a request names none: ihuyi or jumdata
    verify_voice_provider: Literal["ihuyi", "jumdata"] = "ihuyi"
    #: ihuyi's text ({code} where the code goes; it must match a template filed with ihuyi)
    verify_voice_text: str = "您的验证码是{code}，请勿告诉他人。"
    #: jumdata's template id for codes (the code is its one variable); empty: no jumdata
    verify_jumdata_template: str = ""
    #: a provider's "bad number" answer suppresses the number for that provider only
    #: (``provider``) or for every provider (``all``)
    suppress_scope: Literal["provider", "all"] = "provider"
    #: Celery's per-task lines (received, succeeded, retry): WARNING silences them at volume
    task_log_level: str = "INFO"

    # -- deployment: the doors (api/doors.py, api/auth.py) and what operators watch --------
    #: each provider's own secret path segment in its callback URLs; a provider without
    #: one falls back to the shared NOTIFYQ_CALLBACK_TOKEN
    ihuyi_callback_token: SecretStr | None = None
    jumdata_callback_token: SecretStr | None = None
    apispace_sms_callback_token: SecretStr | None = None
    itniotech_callback_token: SecretStr | None = None
    #: during a migration to per-provider tokens: the shared token still opens the URLs
    #: of providers that have their own (URLs handed out before keep working)
    callback_shared_token_fallback: bool = False
    #: receipts whose reference names no notification of ours are deleted after this
    receipt_unknown_ttl: float = Field(7 * 86400.0, gt=0)
    #: a /v1 request body above this answers 413 before it is parsed (campaigns: below)
    api_max_bytes: int = Field(1024 * 1024, ge=1024)
    campaign_max_bytes: int = Field(24 * 1024 * 1024, ge=1024)
    campaign_max_rows: int = Field(100_000, ge=1)
    #: campaigns one API key may create in any 60 s
    campaigns_per_minute: int = Field(10, ge=1)
    #: /metrics, /docs, /redoc and /openapi.json need an API key (or the metrics token)
    ops_routes_need_key: bool = False
    #: a bearer that opens /metrics only (Prometheus), never /v1
    metrics_token: SecretStr | None = None
    #: where each worker's metrics listen: loopback unless a deployment says otherwise
    worker_metrics_host: str = "127.0.0.1"
    #: Flower's ``user:password`` (comma-separated for several); without it (or Flower's
    #: own FLOWER_AUTH OAuth settings) ``notifyq flower`` listens on loopback only
    flower_basic_auth: SecretStr | None = None
    # -- status webhooks (store/outbox.py, store/deliveries.py, tasks/webhooks.py)
    #: let webhook URLs reach private, loopback and link-local addresses (a receiver on
    #: the same host or network: tests, a private deployment); never the default
    webhook_allow_private: bool = False
    #: seconds between a delivery's failed attempts, comma-separated: the first within
    #: 10 s, the sum past 24 h (27 h here); once spent, the delivery is failed (replayable)
    webhook_retry_waits: Annotated[tuple[float, ...], NoDecode] = (
        5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0,
    )  # fmt: skip
    #: seconds a delivery handed to a task is left to it before it is handed out again
    #: (its worker may have died mid-POST): above the 10 s an attempt may take, plus
    #: the time its message may wait in the webhooks queue
    webhook_lease: float = Field(60.0, gt=10)
    #: an endpoint whose every attempt has failed for this long is disabled
    webhook_disable_after: float = Field(3 * 86400.0, gt=0)
    #: seconds the secret a rotation replaces keeps signing beside the new one
    webhook_rotation_overlap: float = Field(86400.0, ge=0)

    @field_validator("webhook_retry_waits", mode="before")
    @classmethod
    def _split_waits(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("webhook_retry_waits")
    @classmethod
    def _some_waits(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(wait <= 0 for wait in value):
            raise ValueError("one or more waits in seconds, each above 0")
        return value

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

    @model_validator(mode="after")
    def _sentinel_named(self) -> Settings:
        self.sentinel  # noqa: B018 -- a Sentinel URL without its service stops start-up
        return self

    @property
    def sentinel(self) -> SentinelRedis | None:
        """``redis_url``'s Sentinels, if it names some (for the broker and the runtime)."""
        return parse_sentinel(self.redis_url, self.redis_sentinel_master)

    @property
    def redis_client_url(self) -> str:
        """``redis_url`` as ``scheduler.connect.redis_client`` reads it (Sentinel URLs in
        the form redis-py's Sentinel is built from; any other URL as it is)."""
        sentinel = self.sentinel
        return sentinel.client_url() if sentinel else self.redis_url

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

    def callback_secret(self, provider: str) -> SecretStr | None:
        """The token that opens ``provider``'s callback URLs: its own, else the shared one."""
        own = getattr(self, f"{provider.replace('-', '_')}_callback_token", None)
        return own if own is not None else self.callback_token

    def callback_url(self, route: str) -> str | None:
        """``route`` begins with the provider's name (``ihuyi/receipt``, ``jumdata``)."""
        secret = self.callback_secret(route.split("/", 1)[0])
        if secret is None:
            return None
        token = secret.get_secret_value()
        return f"{self.public_url.rstrip('/')}/callbacks/{token}/{route}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once (edges only)."""
    return Settings()

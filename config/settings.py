"""Every setting of notifyq, in one pydantic-settings object (prefix ``NOTIFYQ_``).

The object is built once at each edge — the CLI, the worker process, the API app — and
passed in; nothing below reads the environment. Credentials are ``SecretStr`` so a
``repr`` or a log line never shows them. Caps and windows are parsed here, at start-up,
so a typo stops the process instead of silently meaning "no cap".

Each provider's settings are no fields here: its module declares them as a group
(providers/settings.py), read by the same ``NOTIFYQ_*`` names and handed out whole by
:meth:`Settings.provider`, so a new provider adds none here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar, overload
from urllib.parse import quote, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from providers import registry
from providers.settings import ProviderSettings
from scheduler.limits import Cap, parse_caps
from scheduler.windows import CallingWindow, parse_window

G = TypeVar("G", bound=ProviderSettings)
T = TypeVar("T")


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


def setting_error(error: ErrorDetails) -> InitErrorDetails:
    """A provider group's error, as the settings object reports one of its own fields'."""
    message = PydanticCustomError("value_error", "{error}", {"error": error["msg"]})
    return InitErrorDetails(type=message, loc=error["loc"], input=error["input"])


def parsed(group: ProviderSettings, field: str, parse: Callable[[str], T]) -> T:
    """``parse`` of ``group``'s ``field``; what does not parse is a ValidationError at
    the setting it was read from (``NOTIFYQ_IHUYI_CAPS``)."""
    text = getattr(group, field)
    try:
        return parse(text)
    except ValueError as exc:
        message = PydanticCustomError("value_error", "{error}", {"error": str(exc)})
        detail = InitErrorDetails(type=message, loc=(group.setting_of(field),), input=text)
        raise ValidationError.from_exception_data(type(group).__name__, [detail]) from None


class ProviderEnv(PydanticBaseSettingsSource):
    """Every registered provider's settings, by their own names (``NOTIFYQ_IHUYI_ACCOUNT``):
    from the environment, else from ``.env``, as the other settings are read. They are
    no fields of :class:`Settings` (its validator gathers them into each group), so
    pydantic-settings' own sources pass them over."""

    def __init__(
        self, settings_cls: type[BaseSettings], *sources: PydanticBaseSettingsSource
    ) -> None:
        super().__init__(settings_cls)
        self.sources = [s for s in sources if isinstance(s, EnvSettingsSource)]

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        prefix = str(self.config.get("env_prefix", "")).lower()
        found: dict[str, Any] = {}
        for name in registry.setting_names():
            for source in self.sources:
                value = source.env_vars.get(prefix + name)
                if value is not None:
                    found[name] = value
                    break
        return found


class Settings(BaseSettings):
    """The shared settings as fields; each provider's as its group (:meth:`provider`)."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFYQ_", env_file=".env", extra="ignore", frozen=True
    )

    _groups: dict[str, ProviderSettings] = PrivateAttr(default_factory=dict)
    _policies: dict[str, ProviderPolicy] = PrivateAttr(default_factory=dict)

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

    #: how often APISpace voice's reports are pulled, and how many at a time (each
    #: provider's own settings are its group: :meth:`provider`)
    apispace_report_interval: float = 30.0
    apispace_report_page: int = Field(1000, ge=1, le=10000)

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
    publish_linger: float = Field(0.03, ge=0, le=1.0)
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
    #: how long (ms) a worker's thread may hold the GIL while another waits for it
    #: (``sys.setswitchinterval``). A code's task takes the GIL back after each of its
    #: waits on Redis, the store and the call loop, each time behind every campaign
    #: thread that wants it; Python's 5 ms default made that the largest part of a
    #: code's wait during a campaign (bench/latency.py)
    worker_switch_interval_ms: float = Field(1.0, gt=0, le=100)
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        providers = ProviderEnv(settings_cls, env_settings, dotenv_settings)
        return init_settings, env_settings, providers, dotenv_settings, file_secret_settings

    @model_validator(mode="wrap")
    @classmethod
    def _gather_groups(cls, data: Any, handler: ModelWrapValidatorHandler[Settings]) -> Settings:
        """Each provider's settings, out of the flat values read, into its group."""
        if not isinstance(data, Mapping):
            return handler(data)
        names = registry.setting_names()
        settings = handler({k: v for k, v in data.items() if k not in names})
        settings._read_groups({k: v for k, v in data.items() if k in names})
        return settings

    def _read_groups(self, values: Mapping[str, Any]) -> None:
        """Each provider's group and policy. A value that does not parse stops start-up
        with an error that names its setting, as any field's does."""
        groups: dict[str, ProviderSettings] = {}
        policies: dict[str, ProviderPolicy] = {}
        errors: dict[str, InitErrorDetails] = {}
        for name, entry in registry.entries().items():
            try:
                group = entry.settings.from_settings(dict(values))
                policies[name] = self._policy_of(group)
            except ValidationError as exc:
                errors |= {str(e["loc"][0]): setting_error(e) for e in exc.errors()}
                continue
            groups[name] = group
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, list(errors.values()))
        self._policies = policies
        self._groups = groups

    def _policy_of(self, group: ProviderSettings) -> ProviderPolicy:
        """``group``'s caps, window and rate, parsed (ValidationError naming the setting)."""
        zone = ZoneInfo(group.window_zone or self.timezone)
        return ProviderPolicy(
            caps=parsed(group, "caps", parse_caps),
            window=parsed(group, "window", lambda text: parse_window(text, zone)),
            rate=parsed(group, "rate", parse_caps),
            local_time=group.local_time,
        )

    def provider_values(self) -> dict[str, Any]:
        """Every provider's settings by their flat names (``ihuyi_account``)."""
        values: dict[str, Any] = {}
        for group in self._groups.values():
            values.update(group.model_dump(include=set(group.setting_fields()), by_alias=True))
        return values

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> Settings:
        """A copy with ``update``, which may name provider settings (``ihuyi_base_url``)."""
        update = dict(update or {})
        names = registry.setting_names()
        own = {k: v for k, v in update.items() if k in names}
        copy = super().model_copy(
            update={k: v for k, v in update.items() if k not in names}, deep=deep
        )
        copy._read_groups({**self.provider_values(), **own})
        return copy

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

    @overload
    def provider(self, name: str) -> ProviderSettings: ...

    @overload
    def provider(self, name: str, kind: type[G]) -> G: ...

    def provider(self, name: str, kind: type[ProviderSettings] = ProviderSettings) -> Any:
        """``name``'s settings group, as its module declares it (``kind``: that class, for
        the fields only it has). Raises UnknownProvider for a name no entry holds."""
        try:
            group = self._groups[name]
        except KeyError:
            raise registry.UnknownProvider(name) from None
        if not isinstance(group, kind):
            raise TypeError(f"{name}'s settings are {type(group).__name__}, not {kind.__name__}")
        return group

    def policy(self, provider: str) -> ProviderPolicy:
        """When ``provider`` may call a number (parsed when the settings were read)."""
        try:
            return self._policies[provider]
        except KeyError:
            raise registry.UnknownProvider(provider) from None

    def policies(self) -> dict[str, ProviderPolicy]:
        return dict(self._policies)

    def own_callback_token(self, provider: str) -> SecretStr | None:
        """``provider``'s own callback token (None: it has none, or no such provider)."""
        group = self._groups.get(provider)
        return group.callback_token if group is not None else None

    def callback_secret(self, provider: str) -> SecretStr | None:
        """The token that opens ``provider``'s callback URLs: its own, else the shared one."""
        own = self.own_callback_token(provider)
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

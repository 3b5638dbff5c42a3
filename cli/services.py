"""The long-running parts: ``worker``, ``beat``, ``api``, ``flower``, ``sandbox``."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import exits, fail, no_redis, redis_answers, require_free_port, settings, warn
from config.settings import Settings

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def register(app: typer.Typer) -> None:
    app.command(context_settings=EXTRA)(worker)
    app.command(context_settings=EXTRA)(beat)
    app.command()(api)
    app.command(context_settings=EXTRA)(flower)
    app.command()(sandbox)
    app.command()(healthcheck)


def _prepare() -> Settings:
    """Logging, the schema, and a word if Redis is not there yet (the process starts all
    the same and waits for it, as a deployment that starts Redis alongside needs)."""
    from observe.logs import setup
    from store.migrate import ensure_schema

    config = settings()
    setup(config.log_level)
    with exits():
        ensure_schema(config.database_url)
    if not redis_answers(config):
        warn(f"{no_redis(config)}; waiting for it")
    return config


def _not_as_root() -> None:
    """One line instead of Celery's screen-long SecurityWarning for a worker run as root."""
    import os
    import warnings

    from celery.exceptions import SecurityWarning

    if os.getuid() == 0 or os.geteuid() == 0:
        warn("notifyq worker runs as root: run it as an unprivileged user (the image uses one)")
        warnings.filterwarnings("ignore", category=SecurityWarning)


def _credentials_for_live_apis(config: Settings) -> None:
    from config.live import live_without_credentials

    unconfigured = live_without_credentials(config)
    if unconfigured:
        warn(
            "no credentials for the live APIs of "
            + ", ".join(str(u) for u in unconfigured)
            + ": their notifications wait until these are set (notifyq dev uses the sandbox)"
        )


def worker(ctx: typer.Context) -> None:
    """A Celery worker for every notifyq queue, with the benchmarked pool and concurrency
    (NOTIFYQ_WORKER_POOL, NOTIFYQ_WORKER_CONCURRENCY); any celery worker option may follow."""
    config = _prepare()
    _not_as_root()
    _credentials_for_live_apis(config)
    from worker.app import celery

    argv = [
        "worker",
        "--pool",
        config.worker_pool,
        "--concurrency",
        str(config.worker_concurrency),
        "--loglevel",
        config.log_level,
        "--events",
        *ctx.args,
    ]
    celery.worker_main(argv)


def beat(ctx: typer.Context) -> None:
    """The clock: releases deferred notifications, sweeps, polls reports, runs campaigns.
    Any number may run, from one folder or many hosts: each job is sent once a period
    (worker/beat_scheduler.py)."""
    config = _prepare()
    from worker.app import celery

    celery.start(["beat", "--loglevel", config.log_level, *ctx.args])


def api(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """The HTTP API and the provider callbacks (OpenAPI at /docs)."""
    import uvicorn

    from api.app import create_app, settle_heap

    require_free_port(host, port, "notifyq api")
    config = _prepare()
    app = create_app(config)
    if app.state.keyring.empty:
        warn(
            "no API key (NOTIFYQ_API_KEYS, `notifyq keys create`): "
            "every /v1 request will get 401 until one is made"
        )
    settle_heap()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=config.api_access_log,
        timeout_keep_alive=30,
    )


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def flower(ctx: typer.Context) -> None:
    """Flower, the Celery dashboard, for worker.app:celery (tasks, retries, workers).

    Behind a login: NOTIFYQ_FLOWER_BASIC_AUTH (``user:password``), or Flower's own
    OAuth settings (FLOWER_AUTH_PROVIDER, FLOWER_AUTH, FLOWER_OAUTH2_*). Without either
    it listens on loopback only, and refuses to listen anywhere else."""
    import os

    from worker.app import celery

    config = settings()
    args = list(ctx.args)
    if config.flower_basic_auth is not None:
        # through the environment, where Flower reads it too: never on a command line
        # that `ps` shows
        os.environ["FLOWER_BASIC_AUTH"] = config.flower_basic_auth.get_secret_value()
    if not flower_login_configured():
        address = flower_address(args)
        if address is None:
            args.append("--address=127.0.0.1")
        elif address not in LOOPBACK:
            fail(
                "flower: no login configured (NOTIFYQ_FLOWER_BASIC_AUTH or Flower's OAuth "
                f"settings): it listens on loopback only, not on {address or 'every address'}",
                2,
            )
    celery.start(["flower", *args])


def flower_login_configured() -> bool:
    import os

    return bool(
        os.environ.get("FLOWER_BASIC_AUTH")
        or (os.environ.get("FLOWER_AUTH_PROVIDER") and os.environ.get("FLOWER_AUTH"))
    )


def flower_address(args: list[str]) -> str | None:
    """The ``--address`` among Flower's options (or FLOWER_ADDRESS), None if not given."""
    import os

    for index, arg in enumerate(args):
        if arg.startswith("--address="):
            return arg.split("=", 1)[1]
        if arg == "--address" and index + 1 < len(args):
            return args[index + 1]
    return os.environ.get("FLOWER_ADDRESS")


def healthcheck(
    service: Annotated[str, typer.Argument(help="api, worker, beat or flower")],
    url: Annotated[
        str | None, typer.Option(help="api/flower: the address to ask (default: loopback)")
    ] = None,
    max_age: Annotated[
        float, typer.Option(help="beat: its heartbeat file must be younger than this (s)")
    ] = 240.0,
) -> None:
    """Exit 0 if this container's SERVICE is healthy (compose healthchecks call it)."""
    from worker.health import check

    reason = check(service, settings(), url=url, max_age=max_age)
    if reason is not None:
        fail(f"{service}: {reason}", 1)
    typer.echo("ok")


def sandbox(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 9000,
    latency_ms: Annotated[float, typer.Option(help="added to every answer")] = 0.0,
    fail_rate: Annotated[
        float, typer.Option(help="share of requests answered with HTTP 500")
    ] = 0.0,
    fail_rate_for: Annotated[
        list[str] | None, typer.Option(help="PROVIDER=RATE: one provider's own share of HTTP 500s")
    ] = None,
    fail_first: Annotated[
        list[str] | None, typer.Option(help="PROVIDER=N: its first N requests answer HTTP 500")
    ] = None,
    timeout_rate: Annotated[
        float, typer.Option(help="share of requests placed, then held past the client's timeout")
    ] = 0.0,
    timeout_hold: Annotated[
        float, typer.Option(help="seconds a timeout fault holds the request")
    ] = 60.0,
    time_scale: Annotated[
        float, typer.Option(help="multiplies receipt delays and push retry steps")
    ] = 1.0,
    receipt_delay: Annotated[float, typer.Option(help="seconds from call to receipt")] = 2.0,
    outcome: Annotated[
        list[str] | None, typer.Option(help="SUFFIX=KIND, e.g. 0000=no-answer (repeatable)")
    ] = None,
    jumdata_window: Annotated[
        str, typer.Option(help="jumdata's calling window, Beijing time; '' = always")
    ] = "09:00-21:00",
    seed: Annotated[int | None, typer.Option(help="random seed for faults")] = None,
) -> None:
    """Emulators of all five provider APIs, with the credentials of these settings."""
    import uvicorn

    from cli.common import parse_options
    from observe.logs import setup
    from providers.apispace import ApispaceSettings
    from providers.ihuyi import IhuyiSettings
    from providers.itniotech import ItniotechSettings
    from providers.jumdata import JumdataSettings
    from sandbox.app import create_app
    from sandbox.state import KINDS, SandboxConfig

    require_free_port(host, port, "notifyq sandbox")
    config = settings()
    setup(config.log_level)
    outcomes = parse_options(outcome or [], "--outcome")
    fail_rates: dict[str, float] = {}
    for name, rate in parse_options(fail_rate_for or [], "--fail-rate-for").items():
        try:
            fail_rates[name] = float(rate)
        except ValueError:
            fail(f"fail-rate-for: {name}={rate} is not a number", 2)
    first_failures: dict[str, int] = {}
    for name, count in parse_options(fail_first or [], "--fail-first").items():
        if not count.isdigit():
            fail(f"fail-first: {name}={count} is not a whole number", 2)
        first_failures[name] = int(count)
    for suffix, kind in outcomes.items():
        if kind not in KINDS or not suffix.isdigit():
            fail(f"outcome: {suffix}={kind} (digits=one of {', '.join(KINDS)})", 2)
    secret = lambda value: value.get_secret_value() if value is not None else None  # noqa: E731
    defaults = SandboxConfig()
    ihuyi = config.provider("ihuyi", IhuyiSettings)
    jumdata = config.provider("jumdata", JumdataSettings)
    apispace = config.provider("apispace-sms", ApispaceSettings)
    itniotech = config.provider("itniotech", ItniotechSettings)
    sandbox_config = SandboxConfig(
        ihuyi_account=ihuyi.account or defaults.ihuyi_account,
        ihuyi_apikey=secret(ihuyi.apikey) or defaults.ihuyi_apikey,
        ihuyi_receipt_url=config.callback_url("ihuyi/receipt"),
        ihuyi_template_url=config.callback_url("ihuyi/template"),
        jumdata_app_id=jumdata.app_id or defaults.jumdata_app_id,
        jumdata_app_secret=secret(jumdata.app_secret) or defaults.jumdata_app_secret,
        jumdata_window=jumdata_window,
        apispace_token=secret(apispace.token) or defaults.apispace_token,
        apispace_sms_receipt_url=config.callback_url("apispace-sms"),
        itniotech_receipt_url=config.callback_url("itniotech"),
        itniotech_api_key=secret(itniotech.api_key) or defaults.itniotech_api_key,
        itniotech_api_secret=secret(itniotech.api_secret) or defaults.itniotech_api_secret,
        latency_ms=latency_ms,
        fail_rate=fail_rate,
        fail_rates=fail_rates,
        fail_first=first_failures,
        timeout_rate=timeout_rate,
        timeout_hold=timeout_hold,
        time_scale=time_scale,
        receipt_delay=receipt_delay,
        outcomes=outcomes,
        seed=seed,
    )
    uvicorn.run(
        create_app(sandbox_config),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_keep_alive=30,
        backlog=4096,
    )

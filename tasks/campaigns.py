"""Reminder campaigns: import a CSV as it streams, release notifications as workers keep
up, run recurring ones on their cron, and obey pause, resume and cancel.

Import reads and validates row by row (a bad row is skipped and reported with its row
number and reason; it never fails the campaign) and stores accepted rows in chunks, so
a million-row file needs a few megabytes, not a million objects.

Release (``notifyq.campaigns`` on beat, every second) is the back-pressure: it tops the
broker's dispatch queue up to ``NOTIFYQ_RELEASE_HIGH_WATER`` messages and no further,
sharing the room between running campaigns, so Redis never holds a campaign's million
messages and a new single notification never waits behind them for long.

A campaign's own throughput cap is enforced where every cap is — at admission, per
send — so pauses, retries and deferrals cannot make it burst.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from croniter import croniter

from providers.base import Draft, FieldError, InvalidRequest
from scheduler.limits import CapSyntaxError, parse_caps
from store.campaigns import (
    CANCELLED,
    COMPLETED,
    IMPORTING,
    PAUSED,
    RUNNING,
    SCHEDULED,
    CampaignRow,
    CampaignStore,
)
from store.suppressions import SuppressionStore
from tasks.publish import publish_dispatch
from tasks.runtime import Runtime, get_runtime
from worker.app import celery
from worker.queues import DISPATCH_QUEUE

log = logging.getLogger(__name__)

CHUNK = 5000
FANOUT_LOCK = "nq:lock:campaigns"
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class CampaignSpec:
    provider: str
    name: str = ""
    template: str | None = None
    content: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    route: Sequence[Mapping[str, Any]] = ()
    rate: str | None = None
    at: float | None = None
    cron: str | None = None


@dataclass(frozen=True)
class Imported:
    id: int
    status: str
    total: int
    rejected: int
    errors: list[dict[str, Any]]
    next_run_at: float | None


def campaigns(rt: Runtime) -> CampaignStore:
    return CampaignStore(rt.db, rt.notifications)


# -- checking the spec --------------------------------------------------------------------


def check_spec(rt: Runtime, spec: CampaignSpec, now: float) -> float | None:
    """Refuse a bad campaign before any row is read; returns its first run time."""
    errors: list[FieldError] = []
    if spec.provider not in rt.providers:
        errors.append(
            FieldError("provider", f"unknown provider (one of: {', '.join(rt.providers)})")
        )
    if spec.at is not None and spec.cron:
        errors.append(FieldError("cron", "give --at or --cron, not both"))
    if spec.rate:
        try:
            parse_caps(spec.rate)
        except CapSyntaxError as exc:
            errors.append(FieldError("rate", str(exc)))
    first = spec.at if spec.at is not None else now
    if spec.cron:
        if not croniter.is_valid(spec.cron):
            errors.append(FieldError("cron", "not a cron expression like '0 10 * * 1'"))
        else:
            first = next_occurrence(spec.cron, now, rt.settings.zone)
    if spec.route:
        errors.append(
            FieldError(
                "route", "campaign routes: give each leg's template or content (not yet supported)"
            )
        )
    if errors:
        raise InvalidRequest(errors)
    return first


def next_occurrence(cron: str, after: float, zone: Any) -> float:
    """The cron's next moment after ``after``, read in the configured time zone."""
    start = datetime.fromtimestamp(after, UTC).astimezone(zone)
    return float(croniter(cron, start).get_next(datetime).timestamp())


# -- importing ----------------------------------------------------------------------------


def read_rows(stream: TextIO) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The CSV's variable columns (every column but ``mobile``, in order) and its rows."""
    reader = csv.reader(stream)
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        raise InvalidRequest([FieldError("recipients", "the file is empty")]) from None
    if "mobile" not in header:
        raise InvalidRequest([FieldError("recipients", "the CSV needs a 'mobile' column")])
    if len(set(header)) != len(header):
        raise InvalidRequest([FieldError("recipients", "the CSV repeats a column name")])
    variables = [h for h in header if h != "mobile"]

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        for number, values in enumerate(reader, start=2):
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            yield (
                number,
                dict(zip(header, values, strict=False))
                if len(values) == len(header)
                else {"__width__": str(len(values))},
            )

    return variables, rows()


def import_campaign(
    rt: Runtime, spec: CampaignSpec, stream: TextIO, *, now: float | None = None
) -> Imported:
    now = time.time() if now is None else now
    first_run = check_spec(rt, spec, now)
    variables, rows = read_rows(stream)
    missing = sorted(set(_FIELD.findall(spec.content or "")) - set(variables))
    if missing:
        raise InvalidRequest(
            [FieldError("content", f"names columns the CSV lacks: {', '.join(missing)}")]
        )
    store = campaigns(rt)
    campaign_id = store.create(
        name=spec.name or f"{spec.provider} campaign",
        provider=spec.provider,
        template=spec.template,
        content=spec.content,
        options=dict(spec.options),
        route=None,
        rate=spec.rate,
        cron=spec.cron,
        next_run_at=first_run,
    )
    try:
        return _import_rows(rt, spec, store, campaign_id, variables, rows, first_run)
    except (UnicodeDecodeError, csv.Error) as exc:
        _abandon(store, campaign_id)
        raise InvalidRequest(
            [
                FieldError(
                    "recipients",
                    f"unreadable past its last good row ({exc.__class__.__name__}: {exc}); "
                    f"campaign {campaign_id} cancelled, nothing of it sent",
                )
            ]
        ) from None
    except BaseException:
        _abandon(store, campaign_id)
        raise


def _abandon(store: CampaignStore, campaign_id: int) -> None:
    """An import that stopped half way: cancelled, its stored rows with it, so no part of a
    list is ever sent as if it were the whole (its rows were never released)."""
    try:
        store.set_status(campaign_id, CANCELLED, expect=[IMPORTING])
        store.cancel_rows(campaign_id)
    except Exception:
        log.exception("campaign %s: import failed and could not be cancelled", campaign_id)


def _import_rows(
    rt: Runtime,
    spec: CampaignSpec,
    store: CampaignStore,
    campaign_id: int,
    variables: list[str],
    rows: Iterator[tuple[int, dict[str, str]]],
    first_run: float | None,
) -> Imported:
    provider = rt.providers[spec.provider]
    campaign = store.get(campaign_id)
    uses_fields = bool(_FIELD.search(spec.content or ""))
    total = rejected = 0
    errors: list[dict[str, Any]] = []
    chunk: list[CampaignRow] = []
    for number, values in rows:
        if "__width__" in values:
            rejected += 1
            _keep(
                errors,
                number,
                "row",
                f"has {values['__width__']} fields, the header {len(variables) + 1}",
            )
            continue
        content = fill(spec.content, values) if uses_fields and spec.content else spec.content
        draft = Draft(
            spec.provider,
            values["mobile"],
            spec.template,
            content,
            tuple(values[v] for v in variables) if not uses_fields else (),
            dict(spec.options),
        )
        try:
            valid = provider.validate(draft)
        except InvalidRequest as exc:
            rejected += 1
            _keep(errors, number, exc.errors[0].field, exc.errors[0].message)
            continue
        chunk.append(CampaignRow(number, valid.to, valid.content, valid.params))
        if len(chunk) >= CHUNK:
            total += _store_chunk(store, campaign, chunk, first_run)
            chunk = []
    total += _store_chunk(store, campaign, chunk, first_run)
    status = SCHEDULED if total else COMPLETED
    store.finish_import(campaign_id, total=total, rejected=rejected, errors=errors, status=status)
    return Imported(campaign_id, status, total, rejected, errors[:20], first_run)


def fill(text: str, values: Mapping[str, str]) -> str:
    """``{column}`` → that column's value in this row."""
    return _FIELD.sub(lambda match: values.get(match.group(1), ""), text)


def _store_chunk(
    store: CampaignStore, campaign: Any, chunk: list[CampaignRow], first_run: float | None
) -> int:
    if campaign.cron:
        store.add_recipients(campaign.id, chunk)
    else:
        store.add_notifications(campaign, chunk, first_run or time.time())
    return len(chunk)


def _keep(errors: list[dict[str, Any]], row: int, field_name: str, message: str) -> None:
    if len(errors) < 100:
        errors.append({"row": row, "field": field_name, "message": message})


def import_records(
    rt: Runtime, spec: CampaignSpec, records: Iterable[Mapping[str, Any]]
) -> Imported:
    """The API's recipients list ([{mobile, var…}]) imported like a CSV."""
    records = list(records)
    header: list[str] = ["mobile"]
    for record in records:
        header += [k for k in record if k not in header]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for record in records:
        writer.writerow(["" if record.get(h) is None else str(record.get(h)) for h in header])
    buffer.seek(0)
    return import_campaign(rt, spec, buffer)


# -- control ------------------------------------------------------------------------------


class CampaignStateError(Exception):
    """A control that the campaign's status does not allow (pause a completed one)."""


def pause(rt: Runtime, campaign_id: int) -> str:
    store = campaigns(rt)
    if not store.set_status(campaign_id, PAUSED, expect=[SCHEDULED, RUNNING]):
        raise CampaignStateError(f"campaign {campaign_id} is not scheduled or running")
    store.unrelease(campaign_id)
    return PAUSED


def resume(rt: Runtime, campaign_id: int) -> str:
    store = campaigns(rt)
    campaign = store.get(campaign_id)
    target = RUNNING if campaign is not None and campaign.started_at is not None else SCHEDULED
    if not store.set_status(campaign_id, target, expect=[PAUSED]):
        raise CampaignStateError(f"campaign {campaign_id} is not paused")
    return target


def cancel(rt: Runtime, campaign_id: int) -> int:
    """Cancel the campaign and every notification of it not yet handed to a provider."""
    store = campaigns(rt)
    if not store.set_status(campaign_id, CANCELLED, expect=[SCHEDULED, RUNNING, PAUSED, IMPORTING]):
        now_is = store.statuses([campaign_id]).get(campaign_id, "gone")
        raise CampaignStateError(f"campaign {campaign_id} is already {now_is}")
    # rows still in the broker or the deferred set find themselves cancelled: dispatch skips them
    return store.cancel_rows(campaign_id)


@dataclass(frozen=True)
class CampaignState:
    status: str
    rate: tuple[Any, ...]


def campaign_states(rt: Runtime, ids: Iterable[int]) -> dict[int, CampaignState]:
    """Status and throughput cap of each campaign a dispatch batch touches (one query)."""
    return {
        campaign_id: CampaignState(status, parse_caps(rate))
        for campaign_id, (status, rate) in campaigns(rt).states(ids).items()
    }


# -- progress -----------------------------------------------------------------------------

DONE = {"sent", "delivered", "undelivered", "failed", "cancelled", "unknown"}


def progress(rt: Runtime, campaign_id: int, now: float | None = None) -> dict[str, Any] | None:
    store = campaigns(rt)
    campaign = store.get(campaign_id)
    if campaign is None:
        return None
    now = time.time() if now is None else now
    counts = store.counts(campaign_id)
    total = sum(counts.values())
    done = sum(n for s, n in counts.items() if s in DONE)
    elapsed = now - campaign.started_at if campaign.started_at else 0.0
    rate = done / elapsed if elapsed > 0 else 0.0
    return {
        "id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "provider": campaign.provider,
        "cron": campaign.cron,
        "next_run_at": _iso(campaign.next_run_at),
        "started_at": _iso(campaign.started_at),
        "runs": campaign.runs,
        "total": total,
        "accepted": campaign.total,
        "rejected": campaign.rejected,
        "errors": campaign.errors[:20],
        "counts": counts,
        # of the failed, those whose number is suppressed (never called)
        "suppressed": SuppressionStore(rt.db).suppressed_in_campaign(campaign_id)
        if counts.get("failed")
        else 0,
        "done": done,
        "percent": round(100.0 * done / total, 1) if total else 100.0,
        "rate_per_s": round(rate, 2),
        "eta_s": round((total - done) / rate) if rate > 0 and done < total else None,
    }


def _iso(moment: float | None) -> str | None:
    return (
        None
        if moment is None
        else datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
    )


# -- the fan-out on beat ------------------------------------------------------------------


@celery.task(name="notifyq.campaigns")
def run_campaigns() -> dict[str, int]:
    rt = get_runtime()
    lock = rt.redis.lock(FANOUT_LOCK, timeout=60, blocking=False)
    if not lock.acquire():
        return {"skipped": 1}
    try:
        return fan_out(rt)
    finally:
        lock.release()


def fan_out(rt: Runtime, now: float | None = None) -> dict[str, int]:
    now = rt.redis_now() if now is None else now  # one clock for every host
    store = campaigns(rt)
    started = _start_due(rt, store, now)
    running = store.with_status(RUNNING)
    room = (
        rt.settings.release_high_water - int(rt.redis.llen(DISPATCH_QUEUE))
    ) * rt.settings.dispatch_batch
    released = 0
    if running and room > 0:
        share = max(rt.settings.dispatch_batch, room // len(running))
        for campaign in running:
            ids = store.release(campaign.id, share, now)
            if ids:
                publish_dispatch(rt.celery, ids, batch=rt.settings.dispatch_batch)
                released += len(ids)
    finished = sum(_maybe_finish(rt, store, c, now) for c in running)
    return {"started": started, "released": released, "finished": finished}


def _start_due(rt: Runtime, store: CampaignStore, now: float) -> int:
    started = 0
    for campaign in store.with_status(SCHEDULED):
        if campaign.next_run_at is not None and campaign.next_run_at > now:
            continue
        if campaign.cron:
            nxt = next_occurrence(campaign.cron, now, rt.settings.zone)
            made = store.start_run(campaign, now, nxt)
            if made is None:  # another fan-out started this occurrence
                continue
            log.info(
                "campaign %s: run %d started with %d notifications",
                campaign.id,
                campaign.runs + 1,
                made,
            )
        elif not store.set_status(
            campaign.id, RUNNING, expect=[SCHEDULED], started_at=now, runs=campaign.runs + 1
        ):
            continue  # another fan-out started it
        started += 1
    return started


def _maybe_finish(rt: Runtime, store: CampaignStore, campaign: Any, now: float) -> int:
    if store.has_open(campaign.id):
        return 0
    if campaign.cron:  # a recurring campaign waits for its next occurrence
        store.set_status(campaign.id, SCHEDULED, expect=[RUNNING])
    else:
        store.set_status(campaign.id, COMPLETED, expect=[RUNNING])
    return 1

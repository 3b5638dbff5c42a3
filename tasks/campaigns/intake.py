"""A campaign's intake: check its spec, read its CSV as it streams, fill each row's
template, and store accepted rows in chunks.

Import reads a chunk of rows at a time and validates each row (a bad row is skipped and
reported with its row number and reason; it never fails the campaign) and stores the
accepted rows of each chunk, so a million-row file needs a few megabytes, not a million
objects. The fields every row shares (template, content, options) are validated once,
where the provider can tell them apart from a row's own number and variables
(``Provider.row_check``); each row's check then agrees with ``validate`` without running
all of it a million times. A chunk whose rows are all of the usual shape (eleven bare
digits, plain variables) is passed whole, in a few passes over its text
(``RowFieldsCheck.many``); any other chunk row by row. Rows stay the reader's lists, and
become plain tuples to store: no dict, no draft, no call per row on that path.

Chunks are stored on threads of their own (:class:`_ChunkWriter`) while the next one is
read and validated, each in its own transaction. On PostgreSQL several chunks
are stored at once (``CampaignStore.parallel_writes``): the server's work for a chunk (a
``COPY``, its indexes and foreign-key checks, its commit) runs on a backend of its own,
beside the others and beside the Python work, instead of one chunk after another — a
million rows went from ~40 s to ~30 s (``bench/campaign.py``). Chunks stored together
take their ids together, so the release order (by id) follows the file within a few
chunks, not row by row. SQLite takes one writer at a time: one chunk in flight.

A chunk that fails to store fails the import at the next ``put`` (or at the end), and an
import that fails for any reason first waits for every chunk in flight, so the
cancellation that follows (``_abandon``) sees every row that was stored.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice, repeat
from operator import itemgetter
from typing import Any, TextIO

from croniter import croniter

from providers.base import Draft, FieldError, InvalidRequest, Provider
from scheduler.limits import CapSyntaxError, parse_caps
from store.campaigns import (
    CANCELLED,
    COMPLETED,
    IMPORTING,
    SCHEDULED,
    CampaignRow,
    CampaignStore,
    RowValues,
)
from store.schema import DEFAULT_OWNER
from tasks.campaigns import campaigns
from tasks.runtime import Runtime

log = logging.getLogger(__name__)


CHUNK = 5000


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
    #: the name of the API key that asks (store/keys.py); its rows carry it too
    owner: str = DEFAULT_OWNER


@dataclass(frozen=True)
class Imported:
    id: int
    status: str
    total: int
    rejected: int
    errors: list[dict[str, Any]]
    next_run_at: float | None


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


def read_rows(stream: TextIO) -> tuple[list[str], Iterator[list[str]]]:
    """The CSV's header and the reader of its rows, past the header."""
    reader = csv.reader(stream)
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        raise InvalidRequest([FieldError("recipients", "the file is empty")]) from None
    if "mobile" not in header:
        raise InvalidRequest([FieldError("recipients", "the CSV needs a 'mobile' column")])
    if len(set(header)) != len(header):
        raise InvalidRequest([FieldError("recipients", "the CSV repeats a column name")])
    return header, reader


def import_campaign(
    rt: Runtime, spec: CampaignSpec, stream: TextIO, *, now: float | None = None
) -> Imported:
    now = time.time() if now is None else now
    first_run = check_spec(rt, spec, now)
    header, rows = read_rows(stream)
    missing = sorted(set(_FIELD.findall(spec.content or "")) - set(header) - {"mobile"})
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
        owner=spec.owner,
    )
    log.info("campaign %s created by %s", campaign_id, spec.owner)
    try:
        return _import_rows(rt, spec, store, campaign_id, header, rows, first_run)
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
    header: list[str],
    rows: Iterator[list[str]],
    first_run: float | None,
) -> Imported:
    campaign = store.get(campaign_id)
    errors: list[dict[str, Any]] = []
    checks = _row_check(rt.providers[spec.provider], spec, header)
    with _ChunkWriter(store.parallel_writes) as writer:
        total, rejected = _read_rows(
            store, campaign, header, rows, checks, first_run, errors, writer
        )
    status = SCHEDULED if total else COMPLETED
    store.finish_import(campaign_id, total=total, rejected=rejected, errors=errors, status=status)
    return Imported(campaign_id, status, total, rejected, errors[:20], first_run)


#: one CSV row's values → (number in E.164, content, variables), or InvalidRequest
_Check = Callable[[list[str]], tuple[str, str | None, tuple[str, ...]]]
#: a chunk of CSV rows, each of the header's width, and the first one's number → the
#: rows to store, where every row passes at once; None: each row is checked on its own
_Many = Callable[[list[list[str]], int], list[RowValues] | None]


def _row_check(
    provider: Provider, spec: CampaignSpec, header: list[str]
) -> tuple[_Check, _Many | None]:
    """How each row is validated: by the provider's row check where its rows share
    template, content and options (no ``{column}`` in the content), else a draft per row
    through ``validate``. Either way a row is refused for what ``validate`` refuses.

    With the provider's row check, a chunk whose rows are all of the usual shape is
    passed whole (:meth:`RowFieldsCheck.many`): its rows become the tuples to store with
    no call per row; a chunk holding any other row is checked row by row."""
    at = header.index("mobile")
    uses_fields = bool(spec.content and _FIELD.search(spec.content))
    # with {column} fields the columns fill the content and no variables are sent
    params = _picker([] if uses_fields else [i for i, h in enumerate(header) if h != "mobile"])
    shared = None if uses_fields else provider.row_check(spec.template, spec.content, spec.options)
    if shared is not None:
        numbers = itemgetter(at)

        def many(batch: list[list[str]], first: int) -> list[RowValues] | None:
            own = list(map(params, batch))
            tos = shared.many(list(map(numbers, batch)), own)
            if tos is None:
                return None
            return list(zip(range(first, first + len(batch)), tos, repeat(shared.content), own))

        return (lambda values: shared(values[at], params(values))), many

    def validate(values: list[str]) -> tuple[str, str | None, tuple[str, ...]]:
        content = spec.content
        if uses_fields and content:
            content = fill(content, dict(zip(header, values, strict=True)))
        draft = Draft(
            spec.provider,
            values[at],
            template=spec.template,
            content=content,
            params=params(values),
            options=dict(spec.options),
        )
        valid = provider.validate(draft)
        return valid.to, valid.content, tuple(valid.params)

    return validate, None


def _picker(indexes: list[int]) -> Callable[[list[str]], tuple[str, ...]]:
    """The values at ``indexes`` of a row, as a tuple."""
    if not indexes:
        return lambda values: ()
    if len(indexes) == 1:
        (only,) = indexes
        return lambda values: (values[only],)
    return itemgetter(*indexes)


def _read_rows(
    store: CampaignStore,
    campaign: Any,
    header: list[str],
    rows: Iterator[list[str]],
    checks: tuple[_Check, _Many | None],
    first_run: float | None,
    errors: list[dict[str, Any]],
    writer: _ChunkWriter,
) -> tuple[int, int]:
    """Validate every row, a chunk of :data:`CHUNK` read at a time; hand each chunk's
    accepted rows to ``writer``; (accepted, rejected). Rows are numbered as records,
    the header being 1."""
    total = rejected = 0
    width = len(header)
    check, many = checks
    number = 2
    while batch := list(islice(rows, CHUNK)):
        first, number = number, number + len(batch)
        chunk = None
        if many is not None and width > 1 and set(map(len, batch)) == {width}:
            chunk = many(batch, first)
        if chunk is None:
            chunk, refused = _each_row(batch, first, width, check, errors)
            rejected += refused
        if chunk:
            writer.put(_store_chunk, store, campaign, chunk, first_run)
            total += len(chunk)
    return total, rejected


def _each_row(
    batch: list[list[str]], first: int, width: int, check: _Check, errors: list[dict[str, Any]]
) -> tuple[list[RowValues], int]:
    """A chunk's rows checked one by one (blank lines skipped): (accepted, rejected)."""
    chunk: list[RowValues] = []
    rejected = 0
    for number, values in enumerate(batch, start=first):
        if len(values) != width or width == 1:
            if len(values) <= 1 and not "".join(values).strip():
                continue
            if len(values) != width:
                rejected += 1
                _keep(errors, number, "row", f"has {len(values)} fields, the header {width}")
                continue
        try:
            to, content, params = check(values)
        except InvalidRequest as exc:
            rejected += 1
            _keep(errors, number, exc.errors[0].field, exc.errors[0].message)
            continue
        chunk.append(CampaignRow(number, to, content, params))
    return chunk, rejected


class _ChunkWriter:
    """Stores chunks on threads of their own, up to ``in_flight`` at once.

    :meth:`put` first waits until fewer than ``in_flight`` chunks are being stored
    (raising the error of one that failed), so memory stays ``in_flight + 1`` chunks.
    Leaving the ``with`` block waits for every chunk; if the block is left by an error,
    the chunks in flight are still waited for (their own errors, if any, are logged: the
    first error is the one raised)."""

    def __init__(self, in_flight: int = 1) -> None:
        self._pool = ThreadPoolExecutor(in_flight, thread_name_prefix="notifyq-import")
        self._in_flight = in_flight
        self._flights: deque[Future[Any]] = deque()

    def put(self, store: Callable[..., Any], *args: Any) -> None:
        while len(self._flights) >= self._in_flight:
            self._flights.popleft().result()
        self._flights.append(self._pool.submit(store, *args))

    def __enter__(self) -> _ChunkWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            while self._flights:
                flight = self._flights.popleft()
                if kind is None:
                    flight.result()
                elif (error := flight.exception()) is not None:  # waits; the block's error wins
                    log.warning("a campaign chunk failed to store too (%s)", type(error).__name__)
        finally:
            for flight in self._flights:
                flight.cancel()
            self._flights.clear()
            self._pool.shutdown(wait=True)


def fill(text: str, values: Mapping[str, str]) -> str:
    """``{column}`` → that column's value in this row."""
    return _FIELD.sub(lambda match: values.get(match.group(1), ""), text)


def _store_chunk(
    store: CampaignStore, campaign: Any, chunk: list[RowValues], first_run: float | None
) -> None:
    if campaign.cron:
        store.add_recipients(campaign.id, chunk)
    else:
        store.add_notifications(campaign, chunk, first_run or time.time())


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

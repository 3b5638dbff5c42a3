"""What every provider module shares: the request and result types, the outcome classes,
number handling, and the Provider protocol.

Provider modules are *sans-IO*: they turn messages into a :class:`Call` and a
:class:`Reply` into results, and never touch the network themselves. The transport
(``providers/http.py``) performs calls; the dispatch task decides what each outcome
means for the notification. So a provider module can be read, and tested, as a pure
description of its API.

Errors raised here, as a tree::

    ProviderError
     ├── InvalidRequest        a request refused at the door, with one FieldError per field
     ├── MissingCredentials    a provider used without its settings (names the setting)
     └── UnreadableReply       a body that is not what the provider documents
                               (caught by :func:`parse_or_classify`; never escapes a send)

A send never raises for what the provider answered: every answer, including a
network failure or an HTML error page, becomes a :class:`SendResult` with an
:class:`Outcome`.
"""

from __future__ import annotations

import abc
import json
from collections import defaultdict, deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import chain
from typing import Any, ClassVar, NamedTuple

import phonenumbers

from providers.numbers import (  # noqa: F401 - re-exported: every provider uses them
    LANDLINE_TYPES,
    MOBILE_TYPES,
    NumberType,
    e164,
    fast_cn_mobile,
    fast_cn_mobiles,
    mainland,
    mask,
    parse_number,
)

# -- outcomes -------------------------------------------------------------------------


class Outcome(StrEnum):
    """What an answer means for the notification (the dispatch task maps it to an action)."""

    #: the provider took it; a receipt or report will follow
    ACCEPTED = "accepted"
    #: the recipient or the content is wrong: retrying cannot help
    PERMANENT = "permanent"
    #: the provider refused because of its per-number cap: wait, then try again
    CAPPED = "capped"
    #: balance, frozen, IP, auth, not enabled: nothing passes until a human acts
    ACCOUNT = "account"
    #: the provider did not act on it (maintenance, a stale signature, HTTP 503/429) or
    #: it never left (a connect error): try again after a backoff
    TRANSIENT = "transient"
    #: it reached the provider and we cannot know whether the call was placed: a read
    #: timeout after sending, an HTTP 500, a code no document lists (docs/codes.md)
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class CodeRule:
    outcome: Outcome
    meaning: str
    #: for CAPPED: how long the provider blocks the number (seconds) after this answer
    block_seconds: float | None = None
    #: the provider refused the whole request for a parameter error and placed nothing:
    #: a request of several numbers is split to find the bad one(s) (``tasks/calls.py``)
    splits: bool = False
    #: the answer says the *number* is bad — blacklisted, vacant, malformed (the why) —
    #: so it is suppressed: never called again through this provider (tasks/suppressions.py)
    bad_number: str | None = None


CodeTable = Mapping[str, CodeRule]

#: what an answer no document describes means: the request reached the provider, which
#: may have placed the call, so it is never sent again blind (``unknown``)
UNDOCUMENTED = CodeRule(Outcome.AMBIGUOUS, "undocumented code")


def rule_for(table: CodeTable, code: object) -> CodeRule:
    """The rule for a provider code; an undocumented code is ambiguous (and keeps its
    code): the request left, so the call may have been placed."""
    rule = table.get(str(code).strip())
    return rule if rule is not None else UNDOCUMENTED


# -- requests and results -----------------------------------------------------------------


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ProviderError(Exception):
    """Base of every error a provider module raises."""


class InvalidRequest(ProviderError):
    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


class MissingCredentials(ProviderError):
    def __init__(self, provider: str, setting: str) -> None:
        self.provider = provider
        self.setting = setting
        super().__init__(f"{provider}: set {setting} to use this provider")


class UnreadableReply(ProviderError):
    """A reply body the provider's documents do not describe."""


@dataclass(frozen=True, kw_only=True)
class Wording:
    """What a call says: a template or a text, its variables and the provider's options.

    Every record that carries a request from one layer to the next (a draft, a route leg,
    a stored row's draft, a message to place) says it with these names, so they are
    declared here once. Keyword-only: a subclass's own fields (the provider, the number)
    stay positional in front of them."""

    template: str | None = None
    content: str | None = None
    params: Sequence[str] = ()
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Leg(Wording):
    """A provider and what to say through it."""

    provider: str


@dataclass(frozen=True)
class Draft(Leg):
    """A request as a caller wrote it, before validation."""

    to: str


@dataclass(frozen=True)
class Valid(Wording):
    """A draft that passed validation: the number in E.164, options in their types."""

    to: str


@dataclass(frozen=True)
class Message(Wording):
    """What a provider needs to place one call, built from the ledger row at send time."""

    id: int
    to: str


@dataclass(frozen=True)
class Call:
    """One HTTP request, described; the transport performs it."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] | None = None
    form: Mapping[str, str] | None = None
    json: Any = None
    #: safe to repeat after a read failure (a query, never a send or a pull-and-delete)
    idempotent: bool = False


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = ""

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UnreadableReply(f"not JSON: {exc}") from exc


@dataclass(frozen=True)
class SendResult:
    message_id: int
    outcome: Outcome
    #: the provider's own code, as it sent it ("2", "4081", "-16", "http:503", "net:connect")
    code: str
    detail: str = ""
    #: the provider's reference for receipts: voiceid, callId, voiceId
    ref: str | None = None
    block_seconds: float | None = None
    #: the whole request was refused for a parameter error and nothing was placed: if it
    #: carried several numbers, split it to find the bad one(s) (see :class:`CodeRule`)
    splits: bool = False
    #: the provider says this number is bad (blacklisted, vacant, malformed): the why
    bad_number: str | None = None


@dataclass(frozen=True)
class DeliveryReceipt:
    """A receipt, callback or report line, reduced to what the ledger needs."""

    ref: str
    delivered: bool
    code: str
    message: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)
    #: the receipt says the number itself is bad (e.g. vacant): the why, for suppression
    bad_number: str | None = None


@dataclass(frozen=True)
class ReportPage:
    """One pull of a report endpoint: the receipts it held, and how many entries it held
    in all (readable or not), since a *non-empty* page — not a page of good entries —
    is what says there may be more to pull."""

    receipts: list[DeliveryReceipt]
    size: int
    #: entries that were not reports we can read (kept in the journal for a human)
    skipped: int = 0


def json_answer(reply: Reply, key: str) -> dict[str, Any]:
    """A JSON object that holds ``key`` (a provider's code or status), else UnreadableReply."""
    data = reply.json()
    if not isinstance(data, dict) or key not in data:
        raise UnreadableReply(f"JSON without {key!r}")
    return data


#: receipts one push may carry: far more than any provider batches, few enough that a
#: body of junk cannot make us build an unbounded list
MAX_PUSHED = 10000


def pushed_entries(body: Any) -> list[Mapping[str, Any]]:
    """The reports of a pushed body that holds one report object or a JSON array of them
    (providers that batch their receipts send arrays). TypeError/ValueError when it is
    neither, or an array is empty or holds anything but objects: a push we cannot read
    whole is refused whole, so the provider repeats it rather than half of it being lost."""
    if isinstance(body, Mapping):
        return [body]
    if not isinstance(body, list):
        raise TypeError("a push is a report object or an array of them")
    if not body or len(body) > MAX_PUSHED:
        raise ValueError(f"a pushed array holds 1 to {MAX_PUSHED} reports")
    if not all(isinstance(entry, Mapping) for entry in body):
        raise TypeError("a pushed array holds report objects only")
    return body


def required_text(entry: Mapping[str, Any], name: str, limit: int) -> str:
    """A field a pushed report cannot do without, as text of 1 to ``limit`` characters;
    KeyError/ValueError otherwise (naming the field, never echoing its value, since a
    value may be a phone number)."""
    value = entry[name]
    if value is None or isinstance(value, Mapping | list | bool):
        raise ValueError(f"{name} is not text")
    text = str(value).strip()
    if not 1 <= len(text) <= limit:
        raise ValueError(f"{name} must be 1 to {limit} characters")
    return text


def pair_by_number(
    messages: Sequence[Message],
    entries: Iterable[Any],
    *,
    entry_number: Callable[[Any], str],
    region: str = "CN",
) -> list[Any | None]:
    """Each message with the provider's entry for its number (per-recipient answers of a
    batch), ``None`` where the provider said nothing about it. Numbers meet in E.164
    (:func:`same_number`), so an answer that spells a number its own way (``+86…``,
    ``86…``, ``0…`` for a landline, with spaces) still finds its message. One request
    may carry a number twice, so entries are handed out in order, each once."""
    waiting: dict[str, deque[Any]] = defaultdict(deque)
    for entry in entries:
        waiting[same_number(entry_number(entry), region)].append(entry)
    paired: list[Any | None] = []
    for message in messages:
        queue = waiting.get(same_number(message.to, region))
        paired.append(queue.popleft() if queue else None)
    return paired


def same_number(raw: str, region: str = "CN") -> str:
    """A number in E.164 when it parses, else its digits (with ``+``, ``00`` dropped):
    the key two spellings of one number share."""
    text = str(raw).strip()
    fast = fast_cn_mobile(text) if region == "CN" else None
    if fast is not None:
        return fast[0]
    if region != "CN" and not text.startswith("+"):
        text = "+" + "".join(ch for ch in text if ch.isdigit()).removeprefix("00")
    number = parse_number(text, region if region == "CN" else "ZZ")
    if number is not None:
        return e164(number)
    return "+" + "".join(ch for ch in text if ch.isdigit()).removeprefix("00")


def results_for(
    messages: Sequence[Message],
    rule: CodeRule,
    code: object,
    detail: str = "",
    ref: str | None = None,
) -> list[SendResult]:
    """The same answer for every message of one request."""
    return [
        SendResult(
            m.id,
            rule.outcome,
            str(code),
            detail or rule.meaning,
            ref,
            rule.block_seconds,
            rule.splits,
            rule.bad_number,
        )
        for m in messages
    ]


#: HTTP statuses that say the server did not act on the request: 503 ("unable to
#: handle the request", RFC 9110 15.6.4), 429 (too many requests), 408 (it never read
#: the whole request). Safe to try again.
NOT_HANDLED = frozenset({408, 429, 503})
#: statuses that say the account or URL is wrong: nothing will pass until a human acts
MISCONFIGURED = frozenset({401, 403, 404})


def http_outcome(status: int) -> Outcome:
    """What an HTTP status whose body we cannot read means for a send. The request
    reached the provider, so anything that does not say it was *not* acted on — a 500,
    502 or 504 mid-call, a 2xx we cannot read, any other status — is ambiguous: the call
    may have been placed, and a phone call is never resent on a guess."""
    if status in NOT_HANDLED:
        return Outcome.TRANSIENT
    if status in MISCONFIGURED:
        return Outcome.ACCOUNT
    return Outcome.AMBIGUOUS


def classify_http_failure(messages: Sequence[Message], reply: Reply, why: str) -> list[SendResult]:
    """A reply whose body we cannot read, classified by its status (:func:`http_outcome`)."""
    outcome = http_outcome(reply.status)
    return [SendResult(m.id, outcome, f"http:{reply.status}", why[:200]) for m in messages]


def parse_or_classify(
    messages: Sequence[Message], reply: Reply, parse: Callable[[Reply], list[SendResult]]
) -> list[SendResult]:
    """Run a provider's parser; an undocumented body becomes a classified result."""
    try:
        return parse(reply)
    except (UnreadableReply, KeyError, TypeError, ValueError, AttributeError) as exc:
        return classify_http_failure(messages, reply, f"unreadable reply: {exc}")


# -- numbers (providers/numbers.py; re-exported for the provider modules) -----------------


def check_number(
    raw: str,
    *,
    kinds: set[NumberType] | None,
    region: str = "CN",
    country: int | None = 86,
    what: str,
) -> tuple[str | None, list[FieldError]]:
    """The number in E.164, or the reason (naming ``to``) it is not one this provider takes."""
    if region == "CN" and country == 86:
        fast = fast_cn_mobile(raw)
        if fast is not None:
            fast_e164, kind = fast
            if kind is None:
                return None, [FieldError("to", f"not a valid phone number ({what})")]
            if kinds is not None and kind not in kinds:
                return None, [FieldError("to", f"must be {what}")]
            return fast_e164, []
    number = parse_number(raw, region)
    if number is None:
        return None, [FieldError("to", f"not a valid phone number ({what})")]
    if country is not None and number.country_code != country:
        return None, [FieldError("to", f"must be {what}")]
    if kinds is not None and phonenumbers.number_type(number) not in kinds:
        return None, [FieldError("to", f"must be {what}")]
    return e164(number), []


def int_option(
    options: Mapping[str, Any], name: str, low: int, high: int, errors: list[FieldError]
) -> int | None:
    if name not in options or options[name] in (None, ""):
        return None
    value = options[name]
    try:
        number = int(str(value))
    except ValueError:
        errors.append(FieldError(f"options.{name}", "must be a whole number"))
        return None
    if not low <= number <= high:
        errors.append(FieldError(f"options.{name}", f"must be between {low} and {high}"))
        return None
    return number


def joinable_params(params: Sequence[str], separators: str, errors: list[FieldError]) -> None:
    """Variables the provider receives joined in one field (``"a,b"``): a value holding a
    separator would split into two, so it is refused rather than sent shifted.

    Good variables, the common case, are passed by one look at their joined text (each
    separator is one character, so joining makes none)."""
    if all(params):
        joined = "".join(params)
        for sep in separators:
            if sep in joined:
                break
        else:
            return
    for index, value in enumerate(params):
        if not value:
            errors.append(FieldError(f"params[{index}]", "may not be empty"))
        elif any(sep in value for sep in separators):
            shown = " or ".join(repr(sep) for sep in separators)
            errors.append(FieldError(f"params[{index}]", f"may not contain {shown}"))


def unknown_options(options: Mapping[str, Any], known: set[str], errors: list[FieldError]) -> None:
    for name in options:
        if name not in known:
            errors.append(
                FieldError(
                    f"options.{name}",
                    f"unknown option (known: {', '.join(sorted(known)) or 'none'})",
                )
            )


# -- a campaign's rows ---------------------------------------------------------------------

#: a campaign row's check, for rows that share template, content and options: the row's
#: number and variables → (number in E.164, content, variables) as ``validate`` gives
#: them, or :class:`InvalidRequest` naming the same first field ``validate`` would
RowCheck = Callable[[str, tuple[str, ...]], tuple[str, str | None, tuple[str, ...]]]

#: a mainland mobile every number check takes: a campaign's shared fields are validated
#: once with it in the number's place
PROBE_NUMBER = "13800138000"


class RowFields(NamedTuple):
    """What a provider's ``validate`` asks of a row's own fields, where it asks nothing
    else of them: the number's kinds (and how its refusal describes them) and the
    characters a variable may not hold."""

    kinds: set[NumberType]
    what: str
    separators: str


class RowFieldsCheck:
    """The number and variables checks of ``validate``, in its order, and nothing else:
    the shared fields passed once already (:meth:`Provider.row_check`). A row at a time
    (a :data:`RowCheck`), or a chunk of rows at once (:meth:`many`)."""

    def __init__(self, fields: RowFields, content: str | None) -> None:
        self.kinds, self.what, self.separators = fields
        self.content = content

    def __call__(
        self, raw: str, params: tuple[str, ...]
    ) -> tuple[str, str | None, tuple[str, ...]]:
        to, errors = check_number(raw, kinds=self.kinds, what=self.what)
        joinable_params(params, self.separators, errors)
        if errors or to is None:
            raise InvalidRequest(errors)
        return to, self.content, params

    def many(self, raws: list[str], params: list[tuple[str, ...]]) -> list[str] | None:
        """Each row's number in E.164 where every row passes as a row of the usual shape
        does (eleven bare digits, variables none empty and none holding a separator);
        None where any does not: each row is then checked on its own, for its reason.

        A campaign checks a million rows: a chunk of them is looked at in a few passes
        over its joined text, not a few calls per row."""
        values = chain.from_iterable(params)
        if not all(values):
            return None
        joined = "".join(chain.from_iterable(params))
        if any(sep in joined for sep in self.separators):
            return None
        return fast_cn_mobiles(raws, self.kinds)


def row_fields_check(fields: RowFields, content: str | None) -> RowFieldsCheck:
    """The check of a row's own fields (:class:`RowFieldsCheck`)."""
    return RowFieldsCheck(fields, content)


@dataclass(frozen=True)
class CodeLeg:
    """How a verification code rides one provider: the fields of its notification."""

    template: str | None = None
    content: str | None = None
    params: tuple[str, ...] = ()


# -- the protocol -------------------------------------------------------------------------


class Provider(abc.ABC):
    """One provider API. Subclasses are pure: build calls, parse replies."""

    name: ClassVar[str]
    #: recipients one request may carry (itniotech 1000, APISpace batch 1000, ihuyi 1)
    max_batch: ClassVar[int] = 1
    #: the receipts of this provider arrive by a report pull, not a push
    pulls_reports: ClassVar[bool] = False

    #: set where ``validate`` checks a row's number and variables apart from its other
    #: fields, and checks those without looking at the number or variables
    row_fields: ClassVar[RowFields | None] = None

    #: the verification channel this provider carries codes on (``sms``, ``voice``); None:
    #: it carries none
    code_channel: ClassVar[str | None] = None
    #: the setting that holds its text or template id for codes (``verify_sms_text``);
    #: an empty setting leaves it out of a code's fail-over
    code_setting: ClassVar[str | None] = None

    @abc.abstractmethod
    def validate(self, draft: Draft) -> Valid:
        """Refuse bad input with every field's reason (raise InvalidRequest)."""

    def row_check(
        self, template: str | None, content: str | None, options: Mapping[str, Any]
    ) -> RowFieldsCheck | None:
        """A check of many rows that share ``template``, ``content`` and ``options`` (a
        campaign's), agreeing with :meth:`validate` row for row; None where each row
        takes :meth:`validate`. A campaign validates a million rows: the shared fields
        are validated once (with :data:`PROBE_NUMBER` and no variables), each row's
        number and variables on their own. Shared fields that fail return None, so every
        row is refused by :meth:`validate` itself, with its reasons in its order."""
        if self.row_fields is None:
            return None
        try:
            probe = self.validate(
                Draft(self.name, PROBE_NUMBER, template=template, content=content, options=options)
            )
        except InvalidRequest:
            return None
        return row_fields_check(self.row_fields, probe.content)

    @abc.abstractmethod
    def build_send(self, messages: Sequence[Message], now: float) -> Call:
        """One request for these messages (len ≤ max_batch, same :meth:`batch_key`).
        Sign here, at send time, with ``now``: never at enqueue."""

    @abc.abstractmethod
    def parse_send(self, messages: Sequence[Message], reply: Reply) -> list[SendResult]:
        """One result per message, in order."""

    def batch_key(self, message: Message) -> Hashable:
        """Messages with equal keys may share one request (same content, same options)."""
        return (
            message.template,
            message.content,
            message.params,
            tuple(sorted(message.options.items())),
        )

    def send_results(self, messages: Sequence[Message], reply: Reply) -> list[SendResult]:
        return parse_or_classify(messages, reply, lambda r: self.parse_send(messages, r))

    def carry_code(self, code: str, template: str) -> CodeLeg:
        """The notification that carries a verification ``code``, given ``template``: the
        request's own, else :attr:`code_setting`'s value. Only where :attr:`code_channel`."""
        raise InvalidRequest([FieldError("provider", f"{self.name} carries no codes")])

    # -- report pulls (only where :attr:`pulls_reports`) ------------------------------------

    def report_call(self, count: int) -> Call:
        """One pull of up to ``count`` reports (never idempotent: pull-and-delete)."""
        raise NotImplementedError(f"{self.name} pushes its receipts; it has no report pull")

    def read_report(self, reply: Reply) -> ReportPage:
        """A pulled page; UnreadableReply when the page itself is not one."""
        raise NotImplementedError(f"{self.name} pushes its receipts; it has no report pull")

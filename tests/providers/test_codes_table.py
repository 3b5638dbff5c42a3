"""docs/codes.md is the one table of every documented code of the five providers: each
row is answered to its client as the provider would answer, and the client must give
the outcome the page states; each code a client knows must be on the page."""

from __future__ import annotations

import json

import pytest

from providers.apispace import ApispaceSms
from providers.base import Outcome, Reply
from providers.ihuyi import RECEIPT_CODES, Ihuyi
from providers.itniotech import Itniotech
from providers.jumdata import Jumdata
from tests.providers.codes_doc import (
    CLIENTS,
    TABLES,
    Row,
    answer,
    blocked_seconds,
    outcomes,
    rows,
)

SENDING = rows("Sending")


def test_the_page_lists_every_provider_and_the_seeds_codes() -> None:
    assert {r.provider for r in SENDING} == set(CLIENTS)
    assert len(SENDING) == sum(len(TABLES[name]) for name in CLIENTS)


@pytest.mark.parametrize("name", list(CLIENTS))
def test_every_code_a_client_knows_is_on_the_page_and_no_other(name: str) -> None:
    assert set(outcomes(name)) == set(TABLES[name])


@pytest.mark.parametrize("row", SENDING, ids=lambda r: f"{r.provider}:{r.code}")
def test_each_documented_code_has_the_pages_outcome_in_its_client(row: Row) -> None:
    client, message = CLIENTS[row.provider]
    (result,) = client.send_results([message], answer(row.provider, row.code))
    assert result.outcome is Outcome(row.result), row
    assert result.code == row.code
    assert result.splits == ("split" in row.notes)
    if result.outcome is Outcome.CAPPED:
        assert result.block_seconds == blocked_seconds(row)


UNDESCRIBED = {r.code: r for r in rows("Answers no document describes (every provider)")}


@pytest.mark.parametrize("name", list(CLIENTS))
def test_an_undocumented_code_is_ambiguous_in_every_client(name: str) -> None:
    client, message = CLIENTS[name]
    (result,) = client.send_results([message], answer(name, "31337"))
    assert result.outcome is Outcome(UNDESCRIBED["undocumented"].result) is Outcome.AMBIGUOUS
    assert result.code == "31337"


@pytest.mark.parametrize("name", list(CLIENTS))
@pytest.mark.parametrize(
    ("status", "row"),
    [
        *[(status, "http:500") for status in (500, 502, 504, 400)],
        *[(status, "http:503") for status in (503, 429, 408)],
        *[(status, "http:401") for status in (401, 403, 404)],
    ],
)
def test_an_http_status_with_an_unreadable_body_has_the_pages_outcome(
    name: str, status: int, row: str
) -> None:
    client, message = CLIENTS[name]
    (result,) = client.send_results([message], Reply(status, b"<html>error</html>"))
    assert result.outcome is Outcome(UNDESCRIBED[row].result)
    assert result.code == f"http:{status}"


RECEIPTS = rows("Receipts, callbacks and reports")


def test_the_ihuyi_receipt_codes_of_the_page_are_the_seeds() -> None:
    assert {r.code for r in RECEIPTS if r.provider == "ihuyi"} == set(RECEIPT_CODES) | {"other"}


@pytest.mark.parametrize("row", RECEIPTS, ids=lambda r: f"{r.provider}:{r.code}")
def test_each_receipt_code_is_delivered_or_not_as_the_page_says(row: Row) -> None:
    code = {"ihuyi": "-7", "jumdata": "7", "apispace-sms": "UNDELIV"}.get(row.provider, "1001")
    code = row.code if row.code != "other" else code
    if row.provider == "ihuyi":
        receipt = Ihuyi.parse_receipt({"code": code, "voiceid": "60495654", "msg": "m"})
    elif row.provider == "jumdata":
        receipt = Jumdata.parse_callback({"callId": "1", "callStatus": code})
    elif row.provider == "apispace-sms":
        (receipt,) = ApispaceSms.parse_receipts(
            {"msgId": "M1", "mobile": "13800138000", "status": code}
        )
    elif row.provider == "itniotech":
        (receipt,) = Itniotech.parse_receipts({"voiceId": "v1", "status": code})
    else:
        voice = CLIENTS["apispace-voice"][0]
        page = {"code": "000", "data": [{"callId": "C1", "code": "000", "voiceCode": code}]}
        (receipt,) = voice.read_report(Reply(200, json.dumps(page).encode())).receipts  # type: ignore[attr-defined]
    assert receipt.delivered is (row.result == "delivered"), row
    assert receipt.code == code

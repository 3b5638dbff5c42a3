"""An error page instead of an answer, the same for every provider: classified by its
HTTP status (``providers.base.http_outcome``), never raised. What each provider's own
undocumented answers mean stays in its own tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from providers.base import Message, Outcome, Provider, Reply
from tests.providers import test_apispace, test_ihuyi, test_itniotech, test_jumdata

#: each provider with what it is asked to send
SENDS: dict[str, tuple[Callable[[], Provider], Sequence[Message]]] = {
    "apispace-voice": (test_apispace.voice, test_apispace.ONE),
    "apispace-sms": (test_apispace.sms, test_apispace.CODE_1),
    "ihuyi": (test_ihuyi.client, [test_ihuyi.MESSAGE]),
    "itniotech": (test_itniotech.client, [test_itniotech.INDIA, test_itniotech.UK]),
    "jumdata": (test_jumdata.client, [test_jumdata.MESSAGE]),
}


@pytest.mark.parametrize("provider", SENDS)
@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (502, b"<html><body>Bad Gateway</body></html>", Outcome.AMBIGUOUS),
        (200, b"<html><body>oops</body></html>", Outcome.AMBIGUOUS),
        (404, b"<html>Not Found</html>", Outcome.ACCOUNT),
        (401, b"Unauthorized", Outcome.ACCOUNT),
    ],
)
def test_an_error_page_is_classified_by_its_status(
    provider: str, status: int, body: bytes, outcome: Outcome
) -> None:
    client, messages = SENDS[provider]
    results = client().send_results(messages, Reply(status, body))
    assert [r.outcome for r in results] == [outcome] * len(messages)

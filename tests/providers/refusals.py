"""What the provider tests ask of a refused draft."""

from __future__ import annotations

import pytest

from providers.base import Draft, InvalidRequest, Provider


def refused(provider: Provider, draft: Draft) -> list[str]:
    """The fields ``provider`` names in refusing ``draft`` (it must refuse it)."""
    with pytest.raises(InvalidRequest) as caught:
        provider.validate(draft)
    return [e.field for e in caught.value.errors]

"""The settings that wire a notifyq on one machine to the provider sandbox.

Every provider's base URL is the sandbox's; each provider gets credentials made up for
this run (the sandbox takes its own from the same settings, so both sides agree); the
callbacks get a fresh token; and the sandbox is told where our API takes receipts
(``NOTIFYQ_PUBLIC_URL``). ``notifyq demo`` and ``notifyq dev`` start their processes
with them: nothing they start can reach a real provider or ring a real phone.
"""

from __future__ import annotations

import secrets

#: the settings prefixes of the five providers' base URLs (APISpace voice and SMS share one)
BASE_URLS = ("IHUYI", "JUMDATA", "APISPACE", "APISPACE_REPORT", "ITNIOTECH")


def sandboxed(sandbox_url: str, api_url: str) -> dict[str, str]:
    """``NOTIFYQ_*`` variables for processes that talk to the sandbox at ``sandbox_url``
    and take its receipts at ``api_url``."""
    return {
        "NOTIFYQ_PUBLIC_URL": api_url,
        "NOTIFYQ_CALLBACK_TOKEN": secrets.token_urlsafe(16),
        "NOTIFYQ_IHUYI_ACCOUNT": "sandbox",
        "NOTIFYQ_IHUYI_APIKEY": secrets.token_hex(16),
        "NOTIFYQ_JUMDATA_APP_ID": "sandbox",
        "NOTIFYQ_JUMDATA_APP_SECRET": secrets.token_hex(16),
        "NOTIFYQ_APISPACE_TOKEN": secrets.token_hex(16),
        "NOTIFYQ_ITNIOTECH_API_KEY": "sandbox",
        "NOTIFYQ_ITNIOTECH_API_SECRET": secrets.token_hex(16),
        "NOTIFYQ_ITNIOTECH_APP_ID": "sandbox-app",
        **{f"NOTIFYQ_{name}_BASE_URL": sandbox_url for name in BASE_URLS},
    }

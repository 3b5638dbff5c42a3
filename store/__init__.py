"""The ledger (SQLAlchemy 2): the schema and its migrations, the status machine, and the
stores that read and write notifications, receipts, campaigns, verifications and
suppressions — every status write a compare-and-set on the version that was read.

Ground floor: it imports nothing of ours but observe (a counter of stale changes); the
tasks and the API build on it.
"""

from store.db import Database
from store.notifications import (
    Applied,
    Change,
    Enqueued,
    Expect,
    NewNotification,
    NotificationStore,
)
from store.receipts import NewReceipt, ReceiptStore
from store.rows import NotificationRow, RouteLeg
from store.status import FINAL, WAITING, Status

__all__ = [
    "FINAL",
    "WAITING",
    "Applied",
    "Change",
    "Database",
    "Enqueued",
    "Expect",
    "NewNotification",
    "NewReceipt",
    "NotificationRow",
    "NotificationStore",
    "ReceiptStore",
    "RouteLeg",
    "Status",
]

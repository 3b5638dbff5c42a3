"""The ledger (SQLAlchemy 2): every notification, every status change, every receipt."""

from worker.store.db import Database
from worker.store.notifications import (
    Applied,
    Change,
    Enqueued,
    Expect,
    NewNotification,
    NotificationStore,
)
from worker.store.receipts import NewReceipt, ReceiptStore
from worker.store.status import FINAL, WAITING, Status

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
    "NotificationStore",
    "ReceiptStore",
    "Status",
]

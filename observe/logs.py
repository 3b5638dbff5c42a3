"""Logging for every notifyq process: one format, quiet libraries, and no secrets.

Numbers are masked where they are logged (``providers.base.mask``); what this module
adds is the safety net for what we do not write ourselves: the callback token that
sits in callback URLs (uvicorn's access log), and credentials that a library might echo.
"""

from __future__ import annotations

import logging
import re
import sys

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
_CALLBACK_PATH = re.compile(r"/callbacks/[^/\s\"]+/")


class RedactCallbackToken(logging.Filter):
    """``/callbacks/<token>/ihuyi/receipt`` → ``/callbacks/***/ihuyi/receipt``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = (
                tuple(
                    _CALLBACK_PATH.sub("/callbacks/***/", a) if isinstance(a, str) else a
                    for a in record.args
                )
                if isinstance(record.args, tuple)
                else record.args
            )
        if isinstance(record.msg, str):
            record.msg = _CALLBACK_PATH.sub("/callbacks/***/", record.msg)
        return True


def setup(level: str = "INFO", task_level: str | None = None) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_notifyq", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(RedactCallbackToken())
        handler._notifyq = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    # celery.beat logs every tick at INFO (once a second for the pump): keep its warnings
    for noisy in ("httpx", "httpcore", "hpack", "multipart", "python_multipart", "celery.beat"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if task_level:
        for name in ("celery.app.trace", "celery.worker.strategy"):
            logging.getLogger(name).setLevel(task_level)
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactCallbackToken())

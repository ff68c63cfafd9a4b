"""Log output of `mfc serve`: text lines, or one JSON object per line (`--log-format json`).

A JSON line carries `time` (RFC 3339, UTC), `level`, `logger` and `msg`, plus the record's
`fields` (the access log's request id, model, status, token counts and durations).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any


class JsonFormatter(logging.Formatter):
    """One JSON object per record, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC)
        out: dict[str, Any] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(log_format: str, verbose: bool = False) -> None:
    """Send mfc's and uvicorn's logs to stderr in `log_format` (`text` or `json`)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("mfc.llama").setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        # uvicorn's own handlers would print its lines in its format, twice
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True

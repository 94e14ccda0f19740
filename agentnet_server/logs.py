"""Server logging: text or JSON lines on stderr, an audit logger, and no message text in any log.

- `agentnet.server`, `agentnet.session`, ...: operations. A send, join or task change is one INFO
  line with ids only (who, where, seq), never the content.
- `agentnet.audit`: admin and membership actions (enroll, revoke, register, create/join/leave
  group, task changes), one record each, with `audit` fields for JSON collectors.
- peewee's SQL log (which carries message text as parameters) is never shown, even at DEBUG.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pathlib
import sys
from typing import Any

AUDIT = logging.getLogger("agentnet.audit")

# Attributes every LogRecord has; anything else came in through `extra=` and is logged as a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, RFC 3339), level, logger, message and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # SQL statements carry message text as parameters: never log them.
    logging.getLogger("peewee").setLevel(logging.INFO)


def audit_to(path: os.PathLike[str] | str | None, echo: bool = True) -> None:
    """Also append audit records to `path` as JSON lines (owner-only file); echo=False keeps them
    off stderr (the admin commands, whose output is for the person at the terminal)."""
    AUDIT.setLevel(logging.INFO)
    AUDIT.propagate = echo
    if path is None:
        return
    file = pathlib.Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    handler = logging.FileHandler(file, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    AUDIT.addHandler(handler)


def audit(action: str, actor: str = "", **fields: Any) -> None:
    """One audit record: `action` (e.g. device.revoke, group.join), who did it, and ids (no content)."""
    detail = " ".join(f"{k}={v}" for k, v in fields.items() if v not in (None, ""))
    AUDIT.info(
        "%s by %s%s",
        action,
        actor or "operator",
        f" {detail}" if detail else "",
        extra={
            "audit": {
                "action": action,
                "actor": actor or "operator",
                **{k: v for k, v in fields.items() if v not in (None, "")},
            }
        },
    )

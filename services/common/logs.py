"""Structured logs that carry the session and turn id of the request being served."""

import contextvars
import json
import logging
import sys
import time

current_meta: contextvars.ContextVar[tuple[str, str]] = contextvars.ContextVar(
    "current_meta", default=("", "")
)


def bind_meta(session_id: str, turn_id: str) -> None:
    """Attach a session and turn id to every log line written by the current task."""
    current_meta.set((session_id, turn_id))


class _MetaFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.session_id, record.turn_id = current_meta.get()
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(time.time(), 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "session_id": record.session_id,
            "turn_id": record.turn_id,
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(service: str, level: str = "INFO", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_MetaFilter())
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s {service} %(levelname)s %(name)s [%(session_id)s/%(turn_id)s] %(message)s"
            )
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)

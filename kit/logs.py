"""Structured JSON logs with secret redaction.

Secrets (the RunPod API key, env values) must never reach a log line. Callers never log env
maps or RunPod pod bodies; as a second line of defence every record passes `RedactingFilter`,
which masks registered secret values and bearer tokens wherever they appear.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Final

from pythonjsonlogger.json import JsonFormatter

_BEARER: Final = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class RedactingFilter(logging.Filter):
    """Masks known secret values and bearer tokens in the rendered message and its args."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add_secret(self, value: str | None) -> None:
        # Short values would mask ordinary words; real keys are long.
        if value and len(value) >= 6:
            self._secrets.add(value)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return _BEARER.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        for key, value in list(record.__dict__.items()):
            if isinstance(value, str) and key not in ("msg", "name", "levelname", "pathname", "filename"):
                record.__dict__[key] = self.redact(value)
        return True


REDACTOR: Final = RedactingFilter()


def configure_logging(level: str = "info", *, secrets: tuple[str | None, ...] = ()) -> None:
    """JSON lines on stderr at `level`; registers `secrets` for masking. Safe to call twice."""
    for secret in secrets:
        REDACTOR.add_secret(secret)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level"},
        )
    )
    handler.addFilter(REDACTOR)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level.lower(), logging.INFO))
    for noisy in ("httpx", "httpcore", "uvicorn.access", "kubernetes_asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

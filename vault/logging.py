"""A logging filter that scrubs every secret the vault has handed out from log records.

Code must not log secrets in the first place; this is the belt to that pair of braces: if a
provider echoes a key back in an error, the log line still shows only its masked form.
"""

from __future__ import annotations

import json
import logging
import threading

from vault.schemas import mask

_secrets: set[str] = set()
_lock = threading.Lock()
_MAX_TRACKED = 10_000


def register_secret(value: str) -> None:
    if not value or len(value) < 8:
        return
    values = {value}
    if value.startswith("{"):  # a JSON map of tokens (meta PAGE_TOKENS): each token alone is a secret too
        try:
            values |= {v for v in json.loads(value).values() if isinstance(v, str) and len(v) >= 8}
        except (ValueError, AttributeError):
            pass
    with _lock:
        if len(_secrets) + len(values) > _MAX_TRACKED:
            _secrets.clear()
        _secrets.update(values)


def redact(text: str) -> str:
    if not _secrets or not text:
        return text
    for secret in list(_secrets):
        if secret in text:
            text = text.replace(secret, mask(secret))
    return text


def _scrub(record: logging.LogRecord) -> logging.LogRecord:
    if not _secrets:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a malformed record is the formatter's problem, not ours
        return record
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    return record


_installed = False


def install_record_factory() -> None:
    """Scrub at record creation, so every handler (files, Sentry, pytest's) sees the clean text."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        return _scrub(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed = True


class RedactSecretsFilter(logging.Filter):
    """For handlers configured outside Django (the record factory covers the rest)."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrub(record)
        return True

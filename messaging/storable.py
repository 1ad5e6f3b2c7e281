"""Text as PostgreSQL can store it. Its text and jsonb types refuse U+0000, and UTF-8 has no lone
surrogate (JSON's "\\ud83d" without its pair decodes to one): either makes the INSERT fail, which
for a webhook's message means it is never stored and for a sent message's record that the relay
sends it again. Provider texts and customer texts pass through here before they are written."""

from __future__ import annotations


def is_storable(text: str) -> bool:
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(text, limit: int | None = None) -> str:
    """`text` without NUL and with lone surrogates replaced, cut to `limit` characters."""
    text = "" if text is None else str(text)
    if not is_storable(text):
        text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return text if limit is None else text[:limit]


def storable_value(value):
    """A JSON-like value (strings, lists, dicts) with every string storable; the very same object
    when nothing needed a change (the common case: no copy)."""
    if isinstance(value, str):
        return value if is_storable(value) else storable(value)
    if isinstance(value, list):
        items = [storable_value(v) for v in value]
        return value if all(a is b for a, b in zip(items, value)) else items
    if isinstance(value, dict):
        pairs = [(storable_value(k), storable_value(v)) for k, v in value.items()]
        same = all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(pairs, value.items()))
        return value if same else dict(pairs)
    return value

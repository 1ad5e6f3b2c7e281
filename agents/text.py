"""Text shaping for turns: reply parts for messaging, and the agent's synonym dictionary."""

from __future__ import annotations

import re

PART_MARKER = "|||"
_BLANK_LINES = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def split_reply(text: str, *, max_chars: int = 400) -> list[str]:
    """Split on the explicit ||| marker and on blank lines; cut long parts at sentence ends.

    A part is cut once it would grow past `max_chars`; a single sentence longer than that is
    cut at the last space before the limit (never mid-word unless there is no space).
    """
    parts: list[str] = []
    for chunk in (text or "").split(PART_MARKER):
        for paragraph in _BLANK_LINES.split(chunk):
            paragraph = paragraph.strip()
            if paragraph:
                parts.extend(_cut(paragraph, max_chars))
    return parts


def _cut(paragraph: str, max_chars: int) -> list[str]:
    if len(paragraph) <= max_chars:
        return [paragraph]
    out: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(paragraph):
        candidate = f"{current} {sentence}".strip()
        if len(candidate) <= max_chars:
            current = candidate
            continue
        if current:
            out.append(current)
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            out.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        current = sentence
    if current:
        out.append(current)
    return out


def apply_synonyms(query: str, synonyms: dict[str, str] | None) -> str:
    """Replace customer words with the store's terms (whole words, case-insensitive).

    Longer phrases go first so "zapatillas de punta" wins over a shorter overlapping entry.
    """
    if not synonyms or not query:
        return query
    result = query
    for word in sorted(synonyms, key=len, reverse=True):
        target = synonyms[word]
        if not word or not isinstance(target, str):
            continue
        result = re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", target, result, flags=re.IGNORECASE)
    return result


def synonym_instructions(synonyms: dict[str, str] | None) -> str:
    if not synonyms:
        return ""
    pairs = "; ".join(f'"{word}" means "{term}"' for word, term in synonyms.items())
    return (
        "Customers may use their own words for products. When you search the catalogue, use the "
        f"store's terms: {pairs}."
    )

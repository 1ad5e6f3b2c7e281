"""Text out of uploaded files: txt, md, csv, html, pdf (pypdf), docx (python-docx), and the
named person's lines of a WhatsApp chat export for the ADN Personal collection."""

from __future__ import annotations

import codecs
import io
import re
from html.parser import HTMLParser
from pathlib import PurePath

KINDS = {".txt": "text", ".md": "text", ".csv": "text", ".html": "html", ".htm": "html", ".pdf": "pdf", ".docx": "docx"}
SUPPORTED = ", ".join(sorted(KINDS))


class UnsupportedFileType(ValueError):
    pass


class UnreadableFile(ValueError):
    """Empty, undecodable or textless file; the message names the file and the problem."""


def file_kind(filename: str) -> str:
    suffix = PurePath(filename).suffix.lower()
    if suffix not in KINDS:
        raise UnsupportedFileType(
            f"Unsupported file type '{suffix or filename}'. Supported: {SUPPORTED}."
        )
    return KINDS[suffix]


def decode_text(data: bytes, filename: str) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with a BOM; anything else is refused, not guessed."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"{filename} is not valid UTF-8 text (byte {exc.start} cannot be decoded).") from None
    if "\x00" in text:
        raise UnreadableFile(f"{filename} looks binary (it contains NUL bytes), not text.")
    return text


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "noscript", "template"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "table"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skipping:
            self._skipping -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skipping:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return re.sub(r"\n\s*\n+", "\n\n", "".join(parser.parts))


def _pdf_text(data: bytes, filename: str) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnreadableFile(f"{filename} is an encrypted PDF; upload it without a password.")
        return "\n\n".join((page.extract_text() or "") for page in reader.pages)
    except (PdfReadError, ValueError, KeyError) as exc:
        if isinstance(exc, UnreadableFile):
            raise
        raise UnreadableFile(f"{filename} is not a readable PDF: {exc}") from None


def _docx_text(data: bytes, filename: str) -> str:
    import zipfile

    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UnreadableFile(f"{filename} is not a readable .docx file: {exc}") from None
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text for cell in row.cells))
    return "\n".join(parts)


def extract_text(data: bytes, filename: str) -> str:
    """The file's text; raises UnsupportedFileType or UnreadableFile (also for textless files)."""
    if not data:
        raise UnreadableFile(f"{filename} is empty.")
    kind = file_kind(filename)
    if kind == "pdf":
        text = _pdf_text(data, filename)
    elif kind == "docx":
        text = _docx_text(data, filename)
    elif kind == "html":
        text = _html_text(decode_text(data, filename))
    else:
        text = decode_text(data, filename)
    if not text.strip():
        hint = " (a scanned PDF needs OCR first)" if kind == "pdf" else ""
        raise UnreadableFile(f"{filename} contains no text{hint}.")
    return text


# Android: "12/31/23, 9:15 PM - Maria: hi"   iOS: "[31/12/23, 21:15:03] Maria: hi"
_WHATSAPP_LINE = re.compile(
    r"^\u200e?\[?(?P<date>\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4}),?\s+(?P<time>\d{1,2}:\d{2}(?::\d{2})?"
    r"(?:\s?[APap]\.?\s?[Mm]\.?)?)\]?\s*(?:-\s*)?(?P<author>[^:]{1,80}):\s(?P<text>.*)$"
)
_OMITTED = re.compile(r"^<?\u200e?(media omitted|multimedia omitido|image omitted|sticker omitted|audio omitted)>?$", re.I)


def whatsapp_lines(text: str, person: str) -> list[str]:
    """The messages `person` wrote in a WhatsApp chat export (multi-line messages kept whole)."""
    wanted = person.strip().casefold()
    messages: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        match = _WHATSAPP_LINE.match(line)
        if match:
            if current:
                messages.append("\n".join(current).strip())
            author = match.group("author").strip().casefold()
            body = match.group("text").strip()
            current = [body] if author == wanted and not _OMITTED.match(body) else None
        elif current is not None:
            current.append(line)
    if current:
        messages.append("\n".join(current).strip())
    return [m for m in messages if m]

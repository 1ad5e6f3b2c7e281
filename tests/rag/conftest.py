"""Knowledge-base fixtures: vectors database, in-memory job queue, media in a temp dir."""

from __future__ import annotations

import io

import pytest
from procrastinate import testing
from procrastinate.contrib.django import app as procrastinate_app

from rag.vectorstore import use_vector_store


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    # Fast hashing for the fixture users (PBKDF2 costs ~0.5 s per user on these 2 cores).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.RAG_EMBEDDER = "local"
    settings.RAG_VECTOR_BACKEND = "pgvector"
    yield
    use_vector_store(None)


class JobQueue:
    """procrastinate's InMemoryConnector, plus running the queued jobs here, in this thread (so
    they see the test's transaction)."""

    def __init__(self, connector: testing.InMemoryConnector):
        self.connector = connector

    def todo(self, task_name: str | None = None) -> list[dict]:
        return [
            job for job in self.connector.jobs.values()
            if job["status"] == "todo" and (task_name is None or job["task_name"] == task_name)
        ]

    def run_all(self) -> int:
        ran = 0
        while pending := self.todo():
            for job in pending:
                job["status"] = "doing"
                procrastinate_app.tasks[job["task_name"]](**job["args"])
                job["status"] = "succeeded"
                ran += 1
        return ran


@pytest.fixture
def jobs():
    connector = testing.InMemoryConnector()
    with procrastinate_app.replace_connector(connector):
        yield JobQueue(connector)


def make_pdf(lines: list[str]) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    y = 800
    for line in lines:
        pdf.drawString(60, y, line)
        y -= 18
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def make_docx(paragraphs: list[str]) -> bytes:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()

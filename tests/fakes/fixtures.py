"""Shared pytest fixtures for fakes at the edge. Import them in a test package's conftest:

    from tests.fakes.fixtures import *  # noqa: F401,F403  (openai_server)

(pytest 9 refuses `pytest_plugins` outside the rootdir conftest, so importing is the way.)
"""

from __future__ import annotations

import pytest

from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAIServer

__all__ = ["openai_server", "_openai_server_session", "gemini_server", "_gemini_server_session"]


@pytest.fixture(scope="session")
def _openai_server_session():
    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture
def openai_server(_openai_server_session) -> FakeOpenAIServer:
    """A running fake OpenAI server, with an empty script and request log for each test.

    `openai_server.base_url` is "http://127.0.0.1:<port>/v1" (store it as the tenant's
    openai/BASE_URL); script with `openai_server.push(Reply.tool_call(...), Reply.text(...))`.
    """
    _openai_server_session.reset()
    yield _openai_server_session
    _openai_server_session.reset()


@pytest.fixture(scope="session")
def _gemini_server_session():
    server = FakeGeminiServer().start()
    yield server
    server.stop()


@pytest.fixture
def gemini_server(_gemini_server_session, settings) -> FakeGeminiServer:
    """A running fake Gemini REST server; settings.GOOGLE_API_BASE points at it for the test."""
    _gemini_server_session.reset()
    settings.GOOGLE_API_BASE = _gemini_server_session.base_url
    yield _gemini_server_session
    _gemini_server_session.reset()

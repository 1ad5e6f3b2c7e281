"""Embedders: the local one, OpenAI against a local protocol server, Google through respx."""

from __future__ import annotations

import httpx
import pytest
import respx

from rag.embedders import EmbeddingError, GoogleEmbedder, LocalHashEmbedder, OpenAIEmbedder, embedder_for_tenant
from rag.models import DocumentStatus
from rag.selectors import search_knowledge
from tests.rag.helpers import RETURNS_POLICY, ingest_text
from tests.fakes.openai_server import FakeOpenAIServer, fake_embedding
from vault.credentials import set_tenant_credential


@pytest.fixture
def no_backoff(monkeypatch):
    waits = []
    monkeypatch.setattr("rag.embedders._sleep", waits.append)
    return waits


@pytest.fixture
def openai_server():
    with FakeOpenAIServer(reverse_embeddings=True) as server:
        yield server


def _auth(server) -> list[str]:
    return [h["authorization"] for h in server.request_headers if h["path"].endswith("/embeddings")]


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b))


def test_local_embedder_is_deterministic_and_lexical():
    embedder = LocalHashEmbedder()
    refund = embedder.embed_query("refund policy for returns")
    assert refund == embedder.embed_query("refund policy for returns") and len(refund) == 384
    assert _cos(refund, embedder.embed_query("returns and refunds")) > _cos(refund, embedder.embed_query("opening hours"))


def test_openai_embedder_batches_and_orders_by_index(openai_server, settings):
    settings.RAG_EMBED_BATCH_SIZE = 2
    embedder = OpenAIEmbedder("sk-test-key", base_url=openai_server.base_url)
    vectors = embedder.embed_documents(["a", "b", "c"])
    for vector, text in zip(vectors, ["a", "b", "c"], strict=True):  # float32 on the wire
        assert vector == pytest.approx(fake_embedding(text), abs=1e-6)
    assert [r["input"] for r in openai_server.embedding_requests] == [["a", "b"], ["c"]]
    assert {r["model"] for r in openai_server.embedding_requests} == {"text-embedding-3-small"}
    assert _auth(openai_server)[0] == "Bearer sk-test-key"


def test_openai_embedder_retries_429_and_5xx(openai_server, no_backoff):
    openai_server.embedding_failures = [429, 503]
    vector = OpenAIEmbedder("sk-test", base_url=openai_server.base_url).embed_query("hi")
    assert vector == pytest.approx(fake_embedding("hi"), abs=1e-6)
    assert no_backoff == [0.5, 1.0] and len(openai_server.embedding_requests) == 3


def test_openai_embedder_does_not_retry_a_bad_key(openai_server, no_backoff):
    openai_server.embedding_failures = [401]
    with pytest.raises(EmbeddingError, match="OpenAI embeddings failed: HTTP 401: Incorrect API key"):
        OpenAIEmbedder("sk-wrong", base_url=openai_server.base_url).embed_query("hi")
    assert no_backoff == []


@pytest.mark.django_db(databases=["default", "vectors"])
def test_tenant_openai_key_and_base_url_come_from_the_vault(tenant_a, openai_server, settings):
    settings.RAG_EMBEDDER = "auto"
    set_tenant_credential(tenant_a.pk, "openai", "API_KEY", "sk-tenant-a")
    set_tenant_credential(tenant_a.pk, "openai", "BASE_URL", openai_server.base_url)
    embedder = embedder_for_tenant(tenant_a.pk)
    assert (embedder.model, embedder.dims) == ("text-embedding-3-small", 1536)
    document = ingest_text(tenant_a, RETURNS_POLICY)
    assert document.status == DocumentStatus.READY and document.embedding_dims == 1536
    [hit] = search_knowledge(tenant_id=tenant_a.pk, query=RETURNS_POLICY)
    assert hit["score"] == pytest.approx(1.0, abs=1e-4)
    assert set(_auth(openai_server)) == {"Bearer sk-tenant-a"}


GOOGLE_URL = "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents"


@respx.mock
def test_google_embedder_speaks_batch_embed_contents(no_backoff):
    route = respx.post(GOOGLE_URL).mock(side_effect=[
        httpx.Response(429, json={"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}),
        httpx.Response(200, json={"embeddings": [{"values": [3.0, 4.0] + [0.0] * 766}, {"values": [0.0, 2.0] + [0.0] * 766}]}),
    ])
    vectors = GoogleEmbedder("g-test-key").embed_documents(["uno", "dos"])
    assert vectors[0][:2] == pytest.approx([0.6, 0.8]) and vectors[1][:2] == pytest.approx([0.0, 1.0])
    request = route.calls.last.request
    assert request.headers["x-goog-api-key"] == "g-test-key"
    body = request.read().decode()
    assert '"outputDimensionality": 768' in body.replace(":768", ": 768") and "uno" in body
    assert no_backoff == [0.5]


@pytest.mark.django_db(databases=["default", "vectors"])
def test_a_tenant_that_changes_model_is_re_embedded_not_mixed(
    tenant_a, openai_server, settings, jobs, django_capture_on_commit_callbacks
):
    from rag.tasks import reconcile_job
    from rag.vectorstore import get_vector_store

    document = ingest_text(tenant_a, RETURNS_POLICY)
    assert document.embedding_model == "local-hash-384"
    settings.RAG_EMBEDDER = "openai"
    set_tenant_credential(tenant_a.pk, "openai", "API_KEY", "sk-tenant-a")
    set_tenant_credential(tenant_a.pk, "openai", "BASE_URL", openai_server.base_url)
    assert search_knowledge(tenant_id=tenant_a.pk, query="returns") == []  # old vectors never compared
    with django_capture_on_commit_callbacks(execute=True):
        reconcile_job(timestamp=0)
    jobs.run_all()
    document.refresh_from_db()
    assert (document.status, document.embedding_model, document.embedding_dims) == ("ready", "text-embedding-3-small", 1536)
    assert [s.models for s in get_vector_store().list_sources()] == [("text-embedding-3-small",)]
    assert search_knowledge(tenant_id=tenant_a.pk, query=RETURNS_POLICY)[0]["document"]["id"] == document.pk

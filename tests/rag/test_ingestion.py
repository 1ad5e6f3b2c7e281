"""The dual write: failures leave no partial vectors, a failed document can be retried."""

from __future__ import annotations

import pytest

from rag import services
from rag.ingestion import ingest_document
from rag.models import DocumentStatus, RAGDocument
from rag.selectors import drift_report, search_knowledge
from rag.vectorstore import VectorStoreUnavailable, get_vector_store, use_vector_store
from rag.vectorstore.pgvector import PgVectorStore
from tests.rag.helpers import RETURNS_POLICY, ingest_text
from vault.credentials import set_tenant_credential

pytestmark = pytest.mark.django_db(databases=["default", "vectors"])

LONG_TEXT = "\n\n".join(f"Section {i}: " + RETURNS_POLICY * 3 for i in range(12))


class HalfWriteStore(PgVectorStore):
    """Commits the first half of the chunks, then 'loses the connection' (a non-transactional
    store such as Supabase's batched inserts fails like this)."""

    def add(self, chunks):
        super().add(chunks[: len(chunks) // 2])
        raise VectorStoreUnavailable("connection reset by peer")


class DownStore(PgVectorStore):
    def add(self, chunks):
        raise VectorStoreUnavailable("could not connect to server")

    def delete_by_source(self, *, tenant_id, source_id):
        raise VectorStoreUnavailable("could not connect to server")


def _pending(tenant, text=LONG_TEXT, name="manual.txt"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return services.upload_document(
        tenant_id=tenant.pk, uploaded_file=SimpleUploadedFile(name, text.encode()), defer=False
    )


@pytest.mark.parametrize("store", [HalfWriteStore(), DownStore()], ids=["half-write", "down"])
def test_vector_write_failure_leaves_no_orphans_and_a_failed_document(tenant_a, store):
    document = _pending(tenant_a)
    use_vector_store(store)
    result = ingest_document(document.pk, tenant_id=tenant_a.pk)
    use_vector_store(None)
    assert result.status == DocumentStatus.FAILED
    assert "Vector store unavailable" in result.error
    document.refresh_from_db()
    assert document.status == DocumentStatus.FAILED and document.chunk_count == 0
    assert get_vector_store().count(tenant_id=tenant_a.pk) == 0
    assert drift_report().count == 0


def test_a_failed_document_recovers_through_reingest(tenant_a, jobs, django_capture_on_commit_callbacks):
    document = _pending(tenant_a)
    use_vector_store(DownStore())
    ingest_document(document.pk, tenant_id=tenant_a.pk)
    use_vector_store(None)
    with django_capture_on_commit_callbacks(execute=True):
        services.reingest_document(tenant_id=tenant_a.pk, document_id=document.pk)
    jobs.run_all()
    document.refresh_from_db()
    assert document.status == DocumentStatus.READY and document.error == ""
    assert get_vector_store().count(tenant_id=tenant_a.pk) == document.chunk_count > 1


def test_embedding_provider_error_fails_the_document_with_the_message(tenant_a, settings):
    settings.RAG_EMBEDDER = "openai"
    document = _pending(tenant_a)
    result = ingest_document(document.pk, tenant_id=tenant_a.pk)
    assert result.status == DocumentStatus.FAILED
    assert result.error == "OpenAI credentials not configured"
    assert get_vector_store().count(tenant_id=tenant_a.pk) == 0


def test_unreachable_provider_fails_with_its_error(tenant_a, settings, monkeypatch):
    settings.RAG_EMBEDDER = "openai"
    set_tenant_credential(tenant_a.pk, "openai", "API_KEY", "sk-test-unreachable")
    set_tenant_credential(tenant_a.pk, "openai", "BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setattr("rag.embedders._sleep", lambda seconds: None)
    result = ingest_document(_pending(tenant_a).pk, tenant_id=tenant_a.pk)
    assert result.status == DocumentStatus.FAILED
    assert result.error.startswith("OpenAI embeddings failed: ")
    assert "sk-test-unreachable" not in result.error


def test_document_deleted_during_ingestion_leaves_no_vectors(tenant_a, monkeypatch):
    document = _pending(tenant_a)
    original_add = PgVectorStore.add

    def add_then_user_deletes(self, chunks):
        written = original_add(self, chunks)
        services.delete_document(tenant_id=tenant_a.pk, document_id=document.pk)
        return written

    monkeypatch.setattr(PgVectorStore, "add", add_then_user_deletes)
    assert ingest_document(document.pk, tenant_id=tenant_a.pk) is None
    assert get_vector_store().count(tenant_id=tenant_a.pk) == 0


def test_unreadable_pdf_fails_the_document(tenant_a):
    from django.core.files.uploadedfile import SimpleUploadedFile

    document = services.upload_document(
        tenant_id=tenant_a.pk, uploaded_file=SimpleUploadedFile("broken.pdf", b"%PDF-1.4 garbage"), defer=False
    )
    result = ingest_document(document.pk, tenant_id=tenant_a.pk)
    assert result.status == DocumentStatus.FAILED and "broken.pdf" in result.error


def test_adn_personal_keeps_only_the_named_persons_lines(tenant_a):
    chat = (
        "[31/12/23, 21:15:03] Maria Lopez: Hola corazón! Ya te lo mando 💛\n"
        "[31/12/23, 21:15:40] Cliente: cuanto sale el envio\n"
        "[31/12/23, 21:16:02] Maria Lopez: El envío sale 1500 pesos\n"
        "y llega en 3 días\n"
        "[31/12/23, 21:17:00] Maria Lopez: <Media omitted>\n"
    )
    document = ingest_text(tenant_a, chat, name="chat.txt", collection="ADN Personal", person="maria lopez")
    assert document.status == DocumentStatus.READY
    hits = search_knowledge(tenant_id=tenant_a.pk, query="envío", collection="ADN Personal", k=10)
    text = "\n".join(h["content"] for h in hits)
    assert "llega en 3 días" in text and "Hola corazón" in text
    assert "cuanto sale" not in text and "Media omitted" not in text


def test_shadow_messages_are_indexed_by_a_job_and_served_only_when_enabled(
    tenant_a, jobs, django_capture_on_commit_callbacks
):
    messages = [
        {"id": 1, "conversation_id": 7, "role": "customer", "text": "Do you sell gift cards?"},
        {"id": 2, "conversation_id": 7, "role": "agent", "text": "Yes, gift cards from 10 to 200 dollars."},
    ]
    with django_capture_on_commit_callbacks(execute=True):
        services.index_conversation_messages(tenant_id=tenant_a.pk, agent_id=3, messages=messages)
        services.index_conversation_messages(tenant_id=tenant_a.pk, agent_id=3, messages=messages)
    assert len(jobs.todo("rag.index_shadow_messages")) == 2
    jobs.run_all()
    [document] = RAGDocument.objects.for_tenant(tenant_a.pk)  # the replay indexed nothing new
    assert document.collection == "Shadow RAG" and document.agent_id == 3 and document.status == "ready"
    assert search_knowledge(tenant_id=tenant_a.pk, query="gift cards") == []
    hits = search_knowledge(tenant_id=tenant_a.pk, query="gift cards", include_shadow=True)
    assert hits and hits[0]["collection"] == "Shadow RAG"
    assert search_knowledge(tenant_id=tenant_a.pk, query="gift cards", collection="Shadow RAG") == []


def test_a_tenant_crossing_the_threshold_gets_its_own_index_and_searches_use_it(tenant_a, settings):
    """The plan follows the tenant's size: exact below RAG_TENANT_INDEX_MIN_ROWS, its own partial
    HNSW index (built by the ingestion itself) from there on."""
    from django.db import connections

    from rag.vectorstore.pgvector import search_sql, tenant_index_name

    settings.RAG_TENANT_INDEX_MIN_ROWS = settings.RAG_EXACT_SEARCH_MAX_ROWS = 5
    store = get_vector_store()
    document = ingest_document(_pending(tenant_a).pk, tenant_id=tenant_a.pk)
    assert document.status == DocumentStatus.READY and document.chunk_count >= 5
    dims = document.embedding_dims
    assert store.tenant_plan(tenant_a.pk, dims) == (document.chunk_count, tenant_index_name(tenant_a.pk, dims))
    with connections["vectors"].cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        cursor.execute(
            "EXPLAIN " + search_sql(tenant_a.pk, dims, exact=False, collections=False).replace("%(q)b", "%(q)s"),
            {"q": "[" + ",".join(["0.1"] * dims) + "]", "model": document.embedding_model, "k": 5},
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert tenant_index_name(tenant_a.pk, dims) in plan
    hits = search_knowledge(tenant_id=tenant_a.pk, query="returns policy", k=5)
    assert hits and {hit["document"]["id"] for hit in hits} == {document.pk}

"""The Supabase backend's requests and responses (PostgREST-shaped, through respx), and the SQL
it relies on, run against the embedded PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
import respx
from django.db import connections

from django.core.files.uploadedfile import SimpleUploadedFile

from rag import services, vectorstore
from rag.ingestion import ingest_document
from rag.vectorstore import ChunkRecord, VectorStoreUnavailable
from rag.vectorstore import supabase as supabase_backend
from rag.vectorstore.supabase import SupabaseVectorStore
from tests.rag.helpers import RETURNS_POLICY

URL = "https://abcdefghijklmnop.supabase.co"
KEY = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJl"
REST = f"{URL}/rest/v1"


@pytest.fixture
def store(settings):
    settings.SUPABASE_URL, settings.SUPABASE_SERVICE_KEY = URL, KEY
    return SupabaseVectorStore.from_settings()


def _chunk(i: int, tenant_id: int = 5, source_id: int = 12) -> ChunkRecord:
    return ChunkRecord(tenant_id=tenant_id, source_id=source_id, collection="General", chunk_index=i,
                       content=f"chunk {i}", embedding=[0.5, 0.5, 0.0], model="local-hash-384",
                       metadata={"filename": "faq.md"})


@respx.mock
def test_add_posts_rows_with_tenant_and_source_in_metadata(store):
    route = respx.post(f"{REST}/documents").mock(return_value=httpx.Response(201))
    assert store.add([_chunk(0), _chunk(1)]) == 2
    request = route.calls.last.request
    assert request.headers["apikey"] == KEY and request.headers["authorization"] == f"Bearer {KEY}"
    assert "return=minimal" in request.headers["prefer"]
    rows = json.loads(request.content)
    assert rows[1] == {
        "content": "chunk 1",
        "metadata": {"filename": "faq.md", "tenant_id": 5, "source_id": 12, "collection": "General",
                     "chunk_index": 1, "model": "local-hash-384", "dims": 3},
        "embedding": [0.5, 0.5, 0.0],
    }


@respx.mock
def test_search_calls_match_documents_with_the_tenant_filter(store):
    route = respx.post(f"{REST}/rpc/match_documents").mock(return_value=httpx.Response(200, json=[
        {"id": 81, "content": "Returns within 30 days", "similarity": 0.91,
         "metadata": {"tenant_id": 5, "source_id": 12, "collection": "General", "chunk_index": 3}},
        {"id": 99, "content": "someone else's", "similarity": 0.9,
         "metadata": {"tenant_id": 6, "source_id": 13, "collection": "General", "chunk_index": 0}},
    ]))
    hits = store.search(tenant_id=5, embedding=[1, 0, 0], model="local-hash-384", k=4, collections=["General"])
    assert json.loads(route.calls.last.request.content) == {
        "query_embedding": [1.0, 0.0, 0.0], "match_count": 4,
        "filter": {"tenant_id": 5, "model": "local-hash-384"}, "collections": ["General"],
    }
    assert [(h.source_id, h.chunk_index, h.score, h.content) for h in hits] == [(12, 3, 0.91, "Returns within 30 days")]


@respx.mock
def test_delete_by_source_filters_on_metadata_and_reads_the_count(store):
    route = respx.delete(f"{REST}/documents").mock(
        return_value=httpx.Response(204, headers={"Content-Range": "*/7"})
    )
    assert store.delete_by_source(tenant_id=5, source_id=12) == 7
    query = unquote(route.calls.last.request.url.query.decode())
    assert "metadata->>tenant_id=eq.5" in query and "metadata->>source_id=eq.12" in query
    assert "count=exact" in route.calls.last.request.headers["prefer"]


@respx.mock
def test_count_and_list_sources(store):
    respx.head(f"{REST}/documents").mock(return_value=httpx.Response(200, headers={"Content-Range": "0-0/42"}))
    respx.get(f"{REST}/documents").mock(return_value=httpx.Response(200, json=[], headers={"Content-Range": "0-0/42"}))
    assert store.count(tenant_id=5) == 42
    respx.post(f"{REST}/rpc/rag_list_sources").mock(return_value=httpx.Response(200, json=[
        {"tenant_id": 5, "source_id": 12, "chunks": 7, "models": ["local-hash-384"]},
    ]))
    [source] = store.list_sources()
    assert (source.tenant_id, source.source_id, source.chunks, source.models) == (5, 12, 7, ("local-hash-384",))


@respx.mock
def test_postgrest_errors_become_vector_store_unavailable(store):
    respx.post(f"{REST}/documents").mock(return_value=httpx.Response(
        404, json={"code": "42P01", "message": 'relation "public.documents" does not exist', "details": None, "hint": None}
    ))
    with pytest.raises(VectorStoreUnavailable, match='Supabase insert failed: relation "public.documents" does not exist'):
        store.add([_chunk(0)])
    respx.post(f"{REST}/rpc/match_documents").mock(side_effect=httpx.ConnectError("connection refused"))
    with pytest.raises(VectorStoreUnavailable, match="Supabase search failed"):
        store.search(tenant_id=5, embedding=[1, 0, 0], model="m")


@pytest.mark.django_db(databases=["default", "vectors"])
def test_the_shipped_sql_creates_a_working_match_documents():
    sql = (Path(__file__).resolve().parents[2] / "rag" / "sql" / "supabase.sql").read_text()
    sql = sql.replace("vector(1536)", "vector(3)").replace("alter table documents enable row level security;", "")
    with connections["vectors"].cursor() as cursor:
        cursor.execute(sql)
        for tenant_id, source_id, vector in ((5, 12, "[1,0,0]"), (5, 12, "[0,1,0]"), (6, 13, "[1,0,0]")):
            cursor.execute(
                "INSERT INTO documents (content, metadata, embedding) VALUES (%s, %s, %s)",
                ["c", json.dumps({"tenant_id": tenant_id, "source_id": source_id, "collection": "General", "model": "m"}), vector],
            )
        cursor.execute("SELECT metadata->>'tenant_id', similarity FROM match_documents('[1,0,0]', 5, %s)",
                       [json.dumps({"tenant_id": 5, "model": "m"})])
        assert cursor.fetchall() == [("5", 1.0), ("5", 0.0)]
        cursor.execute("SELECT * FROM rag_list_sources()")
        assert cursor.fetchall() == [(5, 12, 2, ["m"]), (6, 13, 1, ["m"])]


@pytest.mark.django_db(databases=["default", "vectors"])
@respx.mock
def test_ingestion_through_supabase_cleans_up_a_failed_batch(store, tenant_a, settings, monkeypatch):
    """The second insert batch fails: the pipeline deletes what the first one wrote."""
    settings.RAG_CHUNK_SIZE, settings.RAG_CHUNK_OVERLAP = 120, 0
    monkeypatch.setattr(supabase_backend, "INSERT_BATCH", 2)
    inserts = respx.post(f"{REST}/documents").mock(side_effect=[
        httpx.Response(201), httpx.Response(503, json={"message": "upstream timeout", "code": "503"}),
    ])
    deletes = respx.delete(f"{REST}/documents").mock(return_value=httpx.Response(204, headers={"Content-Range": "*/2"}))
    document = services.upload_document(
        tenant_id=tenant_a.pk, uploaded_file=SimpleUploadedFile("p.txt", (RETURNS_POLICY * 3).encode()), defer=False
    )
    vectorstore.use_vector_store(store)
    result = ingest_document(document.pk, tenant_id=tenant_a.pk)
    assert inserts.call_count == 2
    assert result.status == "failed" and "Supabase insert failed" in result.error
    # one delete before writing (a re-ingest replaces), one to clean the partial write
    assert deletes.call_count == 2
    assert f"metadata->>source_id=eq.{document.pk}" in unquote(deletes.calls.last.request.url.query.decode())

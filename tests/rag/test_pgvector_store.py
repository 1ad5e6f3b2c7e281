"""The pgvector backend: the interface, the three search plans, models never mixed."""

from __future__ import annotations

import json
import random

import pytest
from django.db import connections

from rag.vectorstore import ChunkRecord, VectorStoreUnavailable
from rag.vectorstore.pgvector import EF_SEARCH, PgVectorStore, search_sql, tenant_index_name

pytestmark = pytest.mark.django_db(databases=["default", "vectors"])


def _unit(seed: int, dims: int = 384) -> list[float]:
    rng = random.Random(seed)
    vector = [rng.gauss(0, 1) for _ in range(dims)]
    norm = sum(x * x for x in vector) ** 0.5
    return [x / norm for x in vector]


def _records(tenant_id, source_id, n, model="m1", dims=384, collection="General", seed=0):
    return [
        ChunkRecord(tenant_id=tenant_id, source_id=source_id, collection=collection, chunk_index=i,
                    content=f"t{tenant_id} s{source_id} c{i}", embedding=_unit(seed + i, dims), model=model)
        for i in range(n)
    ]


def _exact_ids(store, tenant_id, query, k):
    with connections["vectors"].cursor() as cursor:
        cursor.execute(
            "SELECT id FROM rag_chunks WHERE tenant_id = %s ORDER BY (embedding::vector(384) <=> %s::vector(384)) + 0 LIMIT %s",
            [tenant_id, "[" + ",".join(map(str, query)) + "]", k],
        )
        return [row[0] for row in cursor.fetchall()]


def test_add_search_delete_count_list_sources():
    store = PgVectorStore()
    assert store.add(_records(1, 10, 5) + _records(1, 11, 3, seed=100) + _records(2, 20, 4, seed=200)) == 12
    assert store.count() == 12 and store.count(tenant_id=1) == 8
    assert [(s.tenant_id, s.source_id, s.chunks, s.models) for s in store.list_sources()] == [
        (1, 10, 5, ("m1",)), (1, 11, 3, ("m1",)), (2, 20, 4, ("m1",))
    ]
    [hit, *_] = store.search(tenant_id=1, embedding=_unit(2), model="m1", k=3)
    assert (hit.source_id, hit.chunk_index) == (10, 2) and hit.score == pytest.approx(1.0, abs=1e-5)
    assert store.search(tenant_id=2, embedding=_unit(2), model="m1", k=50) and all(
        h.tenant_id == 2 and h.source_id == 20 for h in store.search(tenant_id=2, embedding=_unit(2), model="m1", k=50)
    )
    assert store.delete_by_source(tenant_id=1, source_id=10) == 5
    assert store.delete_by_source(tenant_id=1, source_id=10) == 0  # idempotent
    assert store.delete_by_source(tenant_id=2, source_id=11) == 0  # another tenant's source: untouched
    assert store.count(tenant_id=1) == 3 and store.tenant_plan(1, 384) == (3, None)


def test_vectors_of_two_models_are_never_compared():
    store = PgVectorStore()
    store.add(_records(1, 10, 3, model="old") + _records(1, 11, 3, model="new", seed=50))
    assert {h.source_id for h in store.search(tenant_id=1, embedding=_unit(1), model="new", k=10)} == {11}
    store.add(_records(1, 12, 2, model="wide", dims=1536, seed=7))
    assert {h.source_id for h in store.search(tenant_id=1, embedding=_unit(7, 1536), model="wide", k=10)} == {12}


def test_unsupported_dimension_is_refused_by_name():
    with pytest.raises(VectorStoreUnavailable, match="dimension 10 has no index"):
        PgVectorStore().add(_records(1, 10, 1, dims=10))


def test_collections_filter():
    store = PgVectorStore()
    store.add(_records(1, 10, 3) + _records(1, 11, 3, collection="ADN Personal", seed=1))
    hits = store.search(tenant_id=1, embedding=_unit(1), model="m1", k=10, collections=["ADN Personal"])
    assert {h.collection for h in hits} == {"ADN Personal"}


@pytest.mark.parametrize("plan", ["shared-hnsw", "tenant-hnsw"])
def test_hnsw_plans_keep_the_tenants_recall(settings, plan):
    """Other tenants' rows outnumber ours 20:1; the HNSW plans still return our k nearest."""
    store = PgVectorStore()
    settings.RAG_EXACT_SEARCH_MAX_ROWS = 1  # force the approximate plans at test scale
    store.add(_records(1, 10, 60, seed=0) + _records(2, 20, 1200, seed=10_000))
    if plan == "tenant-hnsw":
        settings.RAG_TENANT_INDEX_MIN_ROWS = 50
        assert store.maintain_tenant_index(1, 384) == tenant_index_name(1, 384)
        assert store.tenant_plan(1, 384) == (60, tenant_index_name(1, 384))
        assert store.maintain_tenant_index(2, 384) == tenant_index_name(2, 384)
    recalls = []
    for q in range(10):
        query = _unit(50_000 + q)
        hits = store.search(tenant_id=1, embedding=query, model="m1", k=10)
        assert len(hits) == 10 and all(h.tenant_id == 1 for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        recalls.append(len({h.chunk_id for h in hits} & set(_exact_ids(store, 1, query, 10))) / 10)
    assert sum(recalls) / len(recalls) >= 0.9


def test_small_tenants_use_exact_search(settings):
    store = PgVectorStore()
    store.add(_records(1, 10, 30))
    query = _unit(999)
    assert [h.chunk_id for h in store.search(tenant_id=1, embedding=query, model="m1", k=10)] == _exact_ids(store, 1, query, 10)


def test_unknown_tenant_finds_nothing():
    assert PgVectorStore().search(tenant_id=999, embedding=_unit(1), model="m1") == []


def _explain(sql: str, params: dict) -> str:
    import numpy as np
    import psycopg

    raw = connections["vectors"].connection
    with psycopg.Cursor(raw) as cursor:
        cursor.execute("EXPLAIN " + sql, {**params, "q": np.asarray(params["q"], dtype=np.float32)})
        return "\n".join(row[0] for row in cursor.fetchall())


def test_exact_plan_never_takes_an_hnsw_index():
    """Below the threshold the distance is on the bare column: even with every other path made
    expensive, the planner has no HNSW index to pick (a filtered HNSW scan would lose recall)."""
    store = PgVectorStore()
    store.add(_records(1, 10, 30))
    with connections["vectors"].cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off")
    exact = search_sql(1, 384, exact=True, collections=False)
    approximate = search_sql(1, 384, exact=False, collections=False)
    params = {"q": _unit(1), "model": "m1", "k": 10}
    assert "hnsw" not in _explain(exact, params)
    assert "rag_chunks_hnsw_384" in _explain(approximate, params)


@pytest.mark.django_db(databases=["default", "vectors"], transaction=True)
def test_hnsw_settings_are_set_once_per_connection_and_again_after_a_reconnect(settings):
    settings.RAG_EXACT_SEARCH_MAX_ROWS = 1  # the HNSW plan, which needs the session settings
    store = PgVectorStore()
    store.add(_records(7, 70, 20))
    try:
        for _ in range(2):  # a fresh connection each time: the settings follow it
            connections["vectors"].close()
            assert len(store.search(tenant_id=7, embedding=_unit(3), model="m1", k=5)) == 5
            raw = connections["vectors"].connection
            assert raw.execute("SHOW hnsw.ef_search").fetchone()[0] == str(EF_SEARCH)
            assert raw.execute("SHOW hnsw.iterative_scan").fetchone()[0] == "relaxed_order"
    finally:
        store.delete_by_source(tenant_id=7, source_id=70)


def test_bulk_write_round_trips_content_metadata_and_vectors():
    """The hand-built binary COPY: every field comes back as written, across blocks, with two
    dimensions in one write, numpy and list vectors, shared and empty metadata, non-ASCII text."""
    import numpy as np

    from rag.vectorstore import pgvector

    shared = {"filename": "manual ñ.pdf", "agent_id": 3}
    records = [
        ChunkRecord(tenant_id=5, source_id=2**40 + i % 3, collection=("General", "Shadow RAG")[i % 2], chunk_index=i,
                    content=f"línea {i} ✓ " * (i % 4), embedding=np.asarray(_unit(i), dtype=np.float32) if i % 2 else _unit(i),
                    model="m1", metadata=shared if i % 3 else {})
        for i in range(7)
    ] + [ChunkRecord(tenant_id=6, source_id=1, collection="General", chunk_index=0, content="wide",
                     embedding=_unit(99, 768), model="m2", metadata={"k": [1, "x"]})]
    store = PgVectorStore()
    original = pgvector.COPY_ROWS_PER_BLOCK
    pgvector.COPY_ROWS_PER_BLOCK = 3  # several blocks
    try:
        assert store.add(records) == 8
    finally:
        pgvector.COPY_ROWS_PER_BLOCK = original
    with connections["vectors"].cursor() as cursor:
        cursor.execute(
            "SELECT tenant_id, source_id, collection, chunk_index, content, metadata, model, dims, embedding::text "
            "FROM rag_chunks ORDER BY tenant_id, chunk_index"
        )
        rows = cursor.fetchall()
    assert len(rows) == 8
    for record, row in zip(records, rows):
        tenant_id, source_id, collection, index, content, metadata, model, dims, text = row
        assert (tenant_id, source_id, collection, index, content, model, dims) == (
            record.tenant_id, record.source_id, record.collection, record.chunk_index, record.content, record.model,
            len(record.embedding),
        )
        assert json.loads(metadata) == record.metadata  # Django's connections load jsonb as text
        vector = np.array([float(x) for x in text.strip("[]").split(",")], dtype=np.float32)
        assert np.array_equal(vector, np.asarray(record.embedding, dtype=np.float32))
    assert store.tenant_plan(5, 384) == (7, None) and store.tenant_plan(6, 768) == (1, None)
    [hit] = store.search(tenant_id=6, embedding=_unit(99, 768), model="m2", k=1)
    assert (hit.content, hit.metadata) == ("wide", {"k": [1, "x"]})

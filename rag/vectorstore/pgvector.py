"""pgvector backend on the `vectors` database alias.

Tenant-filtered search keeps its recall by choosing, per query, among three plans (measured in
bench/rag_search.py, results and reasons in bench/README.md):

1. exact search while the tenant has fewer than RAG_EXACT_SEARCH_MAX_ROWS (1,000) rows of this
   dimension: the distance is taken on the bare `embedding` column, which no HNSW index matches,
   so the B-tree on (tenant_id, source_id) finds the rows. Recall 1.0; its cost grows with the
   tenant's rows (each row sits on its own heap page), which is why the threshold is not higher;
2. the tenant's own partial HNSW index once it has RAG_TENANT_INDEX_MIN_ROWS (1,000) rows
   (built by `maintain_tenant_index` after ingestion; the tenant id is inlined in the SQL, so the
   planner matches the partial predicate);
3. otherwise (a tenant between the two thresholds when they differ, or whose index is not built
   yet) the shared HNSW index of the dimension with `hnsw.iterative_scan = relaxed_order` and
   ef_search 100, so the scan continues until k rows of the tenant are found (a plain filtered
   HNSW scan returned fewer than 10 rows for 87 of 200 small-tenant queries).

The tenant's row count comes from rag_vector_stats (kept in the same transaction as every add
and delete; cached per process for a few seconds). A search is one round trip on the psycopg
connection: the query vector in binary, no transaction, HNSW settings SET once per connection.
"""

from __future__ import annotations

import json
import logging
import struct
import time
import weakref
from collections import Counter
from contextlib import nullcontext
from typing import Sequence

from django.conf import settings
from django.db import DatabaseError, connections, transaction

from rag.vectorstore import ChunkHit, ChunkRecord, SourceSummary, VectorStoreUnavailable
from rag.vectorstore.schema import SUPPORTED_DIMS, apply_schema, hnsw_expression

logger = logging.getLogger(__name__)

ALIAS = "vectors"
EF_SEARCH = 100
_registered = weakref.WeakSet()
_schema_ready: set = set()
_session_tuned = weakref.WeakSet()
_plan_cache: dict[tuple, tuple] = {}
PLAN_CACHE_SECONDS = 10

# Variable-width fields that repeat across a document's chunks come first (encoded once per
# document), then the fixed-width ones (one numpy record per row), then the content.
COPY_COLUMNS = "collection, model, metadata, tenant_id, source_id, chunk_index, dims, embedding, content"
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
# ~1.6 MB at 384 dims: the server parses one block while this side encodes the next (blocks of
# 256-1,024 rows loaded 86-92k rows/s here, 8,192 rows 74k/s; a writer thread did not help).
COPY_ROWS_PER_BLOCK = 1024
_LEN = struct.Struct(">i")
_record_types: dict[int, object] = {}


def _field(data: bytes) -> bytes:
    return _LEN.pack(len(data)) + data


def _record_type(dims: int):
    """numpy record of the fixed-width fields, each preceded by its length as COPY wants it:
    tenant_id int4, source_id int8, chunk_index int4, dims int2, embedding (pgvector's binary
    form: int2 dims, int2 unused, float4 values), and the length of the content that follows."""
    import numpy as np

    record = _record_types.get(dims)
    if record is None:
        record = _record_types[dims] = np.dtype([
            ("tenant_len", ">i4"), ("tenant_id", ">i4"), ("source_len", ">i4"), ("source_id", ">i8"),
            ("index_len", ">i4"), ("chunk_index", ">i4"), ("dims_len", ">i4"), ("dims", ">i2"),
            ("vector_len", ">i4"), ("vector_dims", ">i2"), ("vector_unused", ">i2"), ("vector", ">f4", (dims,)),
            ("content_len", ">i4"),
        ])
    return record


def _encode_rows(chunks: Sequence[ChunkRecord], dims: int) -> bytes:
    import numpy as np

    n = len(chunks)
    contents = [c.content.encode() for c in chunks]
    records = np.zeros(n, dtype=_record_type(dims))
    records["tenant_len"], records["source_len"], records["index_len"], records["dims_len"] = 4, 8, 4, 2
    records["vector_len"], records["vector_dims"], records["dims"] = 4 + 4 * dims, dims, dims
    records["tenant_id"] = np.fromiter((c.tenant_id for c in chunks), np.int32, n)
    records["source_id"] = np.fromiter((c.source_id for c in chunks), np.int64, n)
    records["chunk_index"] = np.fromiter((c.chunk_index for c in chunks), np.int32, n)
    vectors = [c.embedding for c in chunks]
    if not isinstance(vectors[0], np.ndarray):  # embedders' lists of floats: ~9 µs a row either way
        vectors = [np.asarray(v, dtype=np.float32) for v in vectors]
    records["vector"] = vectors
    records["content_len"] = np.fromiter(map(len, contents), np.int32, n)
    # Field count, collection, model and metadata: one bytes object per document.
    prefixes: dict = {}  # a document's chunks share one metadata dict, hence id(); {} is common
    heads = []
    for c in chunks:
        key = (c.collection, c.model, id(c.metadata) if c.metadata else 0)
        head = prefixes.get(key)
        if head is None:
            metadata = b"\x01" + json.dumps(c.metadata, separators=(",", ":")).encode()  # jsonb version 1
            head = prefixes[key] = b"".join((
                struct.pack(">h", 9), _field(c.collection.encode()), _field(c.model.encode()), _field(metadata),
            ))
        heads.append(head)
    width = records.dtype.itemsize
    raw = memoryview(records.view(np.uint8))
    parts: list = [None] * (3 * n)
    parts[0::3] = heads
    parts[1::3] = [raw[i : i + width] for i in range(0, n * width, width)]
    parts[2::3] = contents
    return b"".join(parts)


def binary_copy_blocks(chunks: Sequence[ChunkRecord], rows_per_block: int = COPY_ROWS_PER_BLOCK):
    """PostgreSQL binary COPY data for rag_chunks (columns COPY_COLUMNS), built with numpy records
    rather than psycopg's per-value adapters: what bulk ingestion needs. Per row, Python touches
    three bytes objects (shared head, fixed-width record, content); the rest is numpy."""
    yield COPY_HEADER
    chunks = list(chunks)
    for start in range(0, len(chunks), rows_per_block):
        block = chunks[start : start + rows_per_block]
        by_dims: dict[int, list[ChunkRecord]] = {}
        for chunk in block:
            by_dims.setdefault(len(chunk.embedding), []).append(chunk)
        yield b"".join(_encode_rows(rows, dims) for dims, rows in by_dims.items())
    yield COPY_TRAILER


def vector_literal(embedding: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in embedding) + "]"


def search_sql(tenant_id: int, dims: int, *, exact: bool, collections: bool) -> str:
    """The one statement of a search. Inlined integers: the tenant's partial HNSW index must be
    visible at plan time. Exact search computes the distance on the bare column, which no index
    matches (the planner cannot pick an HNSW index) and which is computed once per row; the
    approximate plans order by the indexed expression `embedding::vector(<dims>)`."""
    column = "embedding" if exact else hnsw_expression(dims)
    where = f"tenant_id = {int(tenant_id)} AND dims = {int(dims)} AND model = %(model)s"
    if collections:
        where += " AND collection = ANY(%(collections)s)"
    return (
        f"SELECT id, source_id, collection, chunk_index, content, metadata, "
        f"{column} <=> %(q)b::vector({int(dims)}) AS distance "
        f"FROM rag_chunks WHERE {where} ORDER BY distance LIMIT %(k)s"
    )


def tenant_index_name(tenant_id: int, dims: int) -> str:
    return f"rag_chunks_hnsw_t{int(tenant_id)}_d{int(dims)}"


class PgVectorStore:
    name = "pgvector"

    def __init__(self, alias: str = ALIAS):
        self.alias = alias

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def connection(self):
        return connections[self.alias]

    def _ready(self):
        """The connected Django connection, schema present, pgvector types registered."""
        connection = self.connection
        connection.ensure_connection()
        raw = connection.connection
        if raw not in _registered:
            from pgvector.psycopg import register_vector

            self._ensure_schema(connection)
            register_vector(raw)
            _registered.add(raw)
        return connection

    def _cursor(self):
        return self._ready().cursor()

    def _ensure_schema(self, connection) -> None:
        """Create the schema on first use when `migrate --database vectors` was never run."""
        key = (connection.settings_dict.get("HOST"), connection.settings_dict.get("NAME"))
        if key in _schema_ready:
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('rag_vector_stats') IS NOT NULL")
            exists = cursor.fetchone()[0]
        if not exists:
            logger.info("Creating the pgvector schema on database %s", key[1])
            apply_schema(connection)
        _schema_ready.add(key)

    def _check_dims(self, dims: int) -> None:
        if dims not in SUPPORTED_DIMS:
            raise VectorStoreUnavailable(
                f"Embedding dimension {dims} has no index; supported: {', '.join(map(str, SUPPORTED_DIMS))}."
            )

    # -- the interface ----------------------------------------------------------------------
    def add(self, chunks: Sequence[ChunkRecord]) -> int:
        if not chunks:
            return 0
        counts = Counter((chunk.tenant_id, len(chunk.embedding)) for chunk in chunks)
        for _tenant_id, dims in counts:
            self._check_dims(dims)
        try:
            with transaction.atomic(using=self.alias), self._cursor() as cursor:
                with cursor.copy(f"COPY rag_chunks ({COPY_COLUMNS}) FROM STDIN WITH (FORMAT BINARY)") as copy:
                    for block in binary_copy_blocks(chunks):
                        copy.write(block)
                self._bump_stats(cursor, counts)
        except DatabaseError as exc:
            raise VectorStoreUnavailable(f"pgvector write failed: {exc}") from exc
        return len(chunks)

    def _bump_stats(self, cursor, counts: dict[tuple[int, int], int]) -> None:
        """One statement for every (tenant, dimension) of the write, in its transaction."""
        if not counts:
            return
        for tenant_id, dims in counts:
            _plan_cache.pop((self.alias, tenant_id, dims), None)
        cursor.execute(
            "INSERT INTO rag_vector_stats (tenant_id, dims, row_count) "
            "SELECT * FROM unnest(%s::integer[], %s::smallint[], %s::bigint[]) "
            "ON CONFLICT (tenant_id, dims) DO UPDATE SET row_count = GREATEST(rag_vector_stats.row_count "
            "+ EXCLUDED.row_count, 0)",
            [[t for t, _ in counts], [d for _, d in counts], list(counts.values())],
        )

    def delete_by_source(self, *, tenant_id: int, source_id: int) -> int:
        try:
            with transaction.atomic(using=self.alias), self._cursor() as cursor:
                cursor.execute(
                    "WITH gone AS (DELETE FROM rag_chunks WHERE tenant_id = %s AND source_id = %s RETURNING dims) "
                    "SELECT dims, count(*) FROM gone GROUP BY dims",
                    [tenant_id, source_id],
                )
                removed = {(tenant_id, dims): -n for dims, n in cursor.fetchall()}
                self._bump_stats(cursor, removed)
        except DatabaseError as exc:
            raise VectorStoreUnavailable(f"pgvector delete failed: {exc}") from exc
        return -sum(removed.values())

    def tenant_plan(self, tenant_id: int, dims: int) -> tuple[int, str | None]:
        """(rows of this tenant and dimension, name of its own HNSW index or None).

        Cached for PLAN_CACHE_SECONDS per process (a stale count only shifts the plan choice
        near a threshold; it never hides rows: zero counts are not cached)."""
        key = (self.alias, int(tenant_id), int(dims))
        cached = _plan_cache.get(key)
        if cached and cached[2] > time.monotonic():
            return cached[0], cached[1]
        with self._cursor() as cursor:
            cursor.execute(
                "SELECT row_count, tenant_index FROM rag_vector_stats WHERE tenant_id = %s AND dims = %s",
                [tenant_id, dims],
            )
            row = cursor.fetchone()
        plan = (row[0], row[1]) if row else (0, None)
        if plan[0]:
            _plan_cache[key] = (*plan, time.monotonic() + PLAN_CACHE_SECONDS)
        return plan

    def _tune_hnsw(self, raw) -> bool:
        """Session-level HNSW settings once per connection, when no transaction could roll them
        back; False means the caller must SET LOCAL inside its own transaction.
        (Needs a session connection: with a transaction pooler, point VECTOR_DATABASE_URL at
        the direct port.)"""
        if raw in _session_tuned:
            return True
        if self.connection.in_atomic_block:
            return False
        with raw.cursor() as cursor:
            cursor.execute(f"SET hnsw.iterative_scan = relaxed_order; SET hnsw.ef_search = {EF_SEARCH}")
        _session_tuned.add(raw)
        return True

    def search(self, *, tenant_id, embedding, model, k=5, collections=None) -> list[ChunkHit]:
        import numpy as np
        import psycopg

        dims = len(embedding)
        self._check_dims(dims)
        try:
            rows, _own_index = self.tenant_plan(tenant_id, dims)
            if rows == 0:
                return []
            exact = rows < settings.RAG_EXACT_SEARCH_MAX_ROWS
            sql = search_sql(tenant_id, dims, exact=exact, collections=bool(collections))
            params = {"q": np.asarray(embedding, dtype=np.float32), "model": model, "k": int(k)}
            if collections:
                params["collections"] = list(collections)
            raw = self._ready().connection  # the psycopg connection itself: no Django wrapping per query
            local = not exact and not self._tune_hnsw(raw)
            # A server-side-binding cursor (Django's own cursors bind on the client, which turns
            # the vector into a 4 kB text literal): the vector travels in binary, the statement
            # goes out as Parse/Bind/Execute in one round trip. Not prepared: planning costs
            # ~0.05 ms here and custom plans keep the partial indexes' choice per tenant.
            with transaction.atomic(using=self.alias) if local else nullcontext(), psycopg.Cursor(raw) as cursor:
                if local:
                    cursor.execute(f"SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.ef_search = {EF_SEARCH}")
                cursor.execute(sql, params, prepare=False)
                found = cursor.fetchall()
        except (DatabaseError, psycopg.Error) as exc:
            raise VectorStoreUnavailable(f"pgvector search failed: {exc}") from exc
        # Django's connections load jsonb as text (JSONField decodes it itself).
        hits = [
            ChunkHit(
                tenant_id=tenant_id, source_id=source_id, collection=collection, chunk_index=index,
                content=content, score=1.0 - dist, metadata=json.loads(metadata) if metadata else {},
                chunk_id=chunk_id,
            )
            for chunk_id, source_id, collection, index, content, metadata, dist in found
        ]
        if not exact:  # relaxed_order may return neighbours slightly out of order
            hits.sort(key=lambda hit: -hit.score)
        return hits

    def count(self, *, tenant_id: int | None = None) -> int:
        with self._cursor() as cursor:
            if tenant_id is None:
                cursor.execute("SELECT count(*) FROM rag_chunks")
            else:
                cursor.execute("SELECT count(*) FROM rag_chunks WHERE tenant_id = %s", [tenant_id])
            return cursor.fetchone()[0]

    def list_sources(self) -> list[SourceSummary]:
        with self._cursor() as cursor:
            cursor.execute(
                "SELECT tenant_id, source_id, count(*), array_agg(DISTINCT model) FROM rag_chunks "
                "GROUP BY tenant_id, source_id ORDER BY tenant_id, source_id"
            )
            return [SourceSummary(t, s, n, tuple(models)) for t, s, n, models in cursor.fetchall()]

    # -- per-tenant indexes -----------------------------------------------------------------
    def maintain_tenant_index(self, tenant_id: int, dims: int) -> str | None:
        """Give a tenant that crossed RAG_TENANT_INDEX_MIN_ROWS its own partial HNSW index."""
        rows, own_index = self.tenant_plan(tenant_id, dims)
        if own_index or rows < settings.RAG_TENANT_INDEX_MIN_ROWS:
            return own_index
        name = tenant_index_name(tenant_id, dims)
        # CONCURRENTLY keeps ingestion of other tenants going; it cannot run inside a transaction.
        concurrently = "" if self.connection.in_atomic_block else "CONCURRENTLY "
        with self._cursor() as cursor:
            cursor.execute(
                f"CREATE INDEX {concurrently}IF NOT EXISTS {name} ON rag_chunks USING hnsw "
                f"({hnsw_expression(dims)} vector_cosine_ops) WITH (m = 16, ef_construction = 64) "
                f"WHERE tenant_id = {int(tenant_id)} AND dims = {int(dims)}"
            )
            cursor.execute(
                "UPDATE rag_vector_stats SET tenant_index = %s WHERE tenant_id = %s AND dims = %s",
                [name, tenant_id, dims],
            )
        _plan_cache.pop((self.alias, int(tenant_id), int(dims)), None)
        logger.info("Built partial HNSW index %s for tenant %s (%s rows)", name, tenant_id, rows)
        return name

"""pgvector backend on the `vectors` database alias.

Tenant-filtered search keeps its recall by choosing, per query, among three plans (measured in
bench/rag_search.py, results and reasons in bench/README.md):

1. exact search while the tenant has fewer than RAG_EXACT_SEARCH_MAX_ROWS (2,500) rows of this
   dimension: the distance is taken on the bare `embedding` column, which no HNSW index matches,
   so the B-tree on (tenant_id, source_id) finds the rows. Recall 1.0; its cost grows with the tenant's rows (each row
   sits on its own heap page), which is why the threshold is not higher;
2. the tenant's own partial HNSW index once it has RAG_TENANT_INDEX_MIN_ROWS (20,000) rows
   (built by `maintain_tenant_index` after ingestion; the tenant id is inlined in the SQL, so the
   planner matches the partial predicate);
3. otherwise the shared HNSW index of the dimension with `hnsw.iterative_scan = relaxed_order`
   and ef_search 100, so the scan continues until k rows of the tenant are found (a plain
   filtered HNSW scan returned fewer than 10 rows for 87 of 200 small-tenant queries).

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

COPY_COLUMNS = "tenant_id, source_id, collection, chunk_index, content, metadata, model, dims, embedding"
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
_ROW_START = struct.Struct(">hiiiq")  # field count; tenant_id (len, int4); source_id (len, int8)
_INT4 = struct.Struct(">ii")
_DIMS = struct.Struct(">ih")
_LEN = struct.Struct(">i")


def _field(data: bytes) -> bytes:
    return _LEN.pack(len(data)) + data


def binary_copy_blocks(chunks: Sequence[ChunkRecord], block_bytes: int = 1 << 20):
    """PostgreSQL binary COPY data for rag_chunks, built with struct and numpy rather than
    psycopg's per-value adapters (about 5x faster): what bulk ingestion needs. Fields that repeat
    across chunks (collection, model, a document's metadata, the vector header) are encoded once."""
    import numpy as np

    yield COPY_HEADER
    buffer: list[bytes] = []
    size = 0
    cache: dict = {}  # documents share one metadata dict across their chunks, hence id()

    def once(key, make):
        value = cache.get(key)
        if value is None:
            value = cache[key] = make()
        return value

    for c in chunks:
        vector = np.asarray(c.embedding, dtype=">f4")
        dims = vector.shape[0]
        content = c.content.encode()
        row = b"".join((
            _ROW_START.pack(9, 4, c.tenant_id, 8, c.source_id),
            once(("c", c.collection), lambda: _field(c.collection.encode())),
            _INT4.pack(4, c.chunk_index),
            _LEN.pack(len(content)), content,
            once(("m", id(c.metadata)), lambda: _field(b"\x01" + json.dumps(c.metadata, separators=(",", ":")).encode())),
            once(("model", c.model), lambda: _field(c.model.encode())),
            once(("d", dims), lambda: _DIMS.pack(2, dims) + struct.pack(">ihh", 4 + 4 * dims, dims, 0)),
            vector.tobytes(),
        ))
        buffer.append(row)
        size += len(row)
        if size >= block_bytes:
            yield b"".join(buffer)
            buffer, size = [], 0
    buffer.append(COPY_TRAILER)
    yield b"".join(buffer)


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
        counts: dict[tuple[int, int], int] = {}
        for chunk in chunks:
            self._check_dims(chunk.dims)
            counts[(chunk.tenant_id, chunk.dims)] = counts.get((chunk.tenant_id, chunk.dims), 0) + 1
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
        for (tenant_id, dims), delta in counts.items():
            _plan_cache.pop((self.alias, tenant_id, dims), None)
            cursor.execute(
                "INSERT INTO rag_vector_stats (tenant_id, dims, row_count) VALUES (%s, %s, %s) "
                "ON CONFLICT (tenant_id, dims) DO UPDATE SET row_count = GREATEST(rag_vector_stats.row_count "
                "+ EXCLUDED.row_count, 0)",
                [tenant_id, dims, delta],
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
        hits = [
            ChunkHit(
                tenant_id=tenant_id, source_id=source_id, collection=collection, chunk_index=index,
                content=content, score=1.0 - dist, metadata=metadata or {}, chunk_id=chunk_id,
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

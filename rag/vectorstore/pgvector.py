"""pgvector backend on the `vectors` database alias.

Tenant-filtered search keeps its recall by choosing, per query, among three plans (measured in
bench/rag_search.py, results in bench/README.md):

1. exact search when the tenant has fewer than RAG_EXACT_SEARCH_MAX_ROWS rows of this dimension
   (the `+ 0` on the distance keeps the planner off the HNSW index; the B-tree on
   (tenant_id, dims) finds the rows): recall 1.0 at a fraction of a millisecond;
2. the tenant's own partial HNSW index once it has RAG_TENANT_INDEX_MIN_ROWS rows (created by
   `maintain_tenant_index` after ingestion; the tenant id is inlined in the SQL, so the planner
   matches the partial predicate);
3. otherwise the shared HNSW index of the dimension with `hnsw.iterative_scan = relaxed_order`
   and ef_search 100, so the scan keeps going until k rows of the tenant are found.

The tenant's row count comes from rag_vector_stats (one primary-key lookup), kept in the same
transaction as every add and delete.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import nullcontext
from typing import Sequence

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from psycopg.types.json import Jsonb

from rag.vectorstore import ChunkHit, ChunkRecord, SourceSummary, VectorStoreUnavailable
from rag.vectorstore.schema import SUPPORTED_DIMS, apply_schema, hnsw_expression

logger = logging.getLogger(__name__)

ALIAS = "vectors"
EF_SEARCH = 100
_registered = weakref.WeakSet()
_schema_ready: set = set()

COPY_COLUMNS = "tenant_id, source_id, collection, chunk_index, content, metadata, model, dims, embedding"
COPY_TYPES = ["integer", "bigint", "text", "integer", "text", "jsonb", "text", "smallint", "vector"]


def vector_literal(embedding: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in embedding) + "]"


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

    def _cursor(self):
        connection = self.connection
        connection.ensure_connection()
        raw = connection.connection
        if raw not in _registered:
            from pgvector.psycopg import register_vector

            self._ensure_schema(connection)
            register_vector(raw)
            _registered.add(raw)
        return connection.cursor()

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
        import numpy as np

        counts: dict[tuple[int, int], int] = {}
        for chunk in chunks:
            self._check_dims(chunk.dims)
            counts[(chunk.tenant_id, chunk.dims)] = counts.get((chunk.tenant_id, chunk.dims), 0) + 1
        try:
            with transaction.atomic(using=self.alias), self._cursor() as cursor:
                with cursor.copy(f"COPY rag_chunks ({COPY_COLUMNS}) FROM STDIN WITH (FORMAT BINARY)") as copy:
                    copy.set_types(COPY_TYPES)
                    for c in chunks:
                        copy.write_row((
                            c.tenant_id, c.source_id, c.collection, c.chunk_index, c.content,
                            Jsonb({**c.metadata, "tenant_id": c.tenant_id, "source_id": c.source_id}),
                            c.model, c.dims, np.asarray(c.embedding, dtype=np.float32),
                        ))
                self._bump_stats(cursor, counts)
        except DatabaseError as exc:
            raise VectorStoreUnavailable(f"pgvector write failed: {exc}") from exc
        return len(chunks)

    def _bump_stats(self, cursor, counts: dict[tuple[int, int], int]) -> None:
        for (tenant_id, dims), delta in counts.items():
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
        """(rows of this tenant and dimension, name of its own HNSW index or None)."""
        with self._cursor() as cursor:
            cursor.execute(
                "SELECT row_count, tenant_index FROM rag_vector_stats WHERE tenant_id = %s AND dims = %s",
                [tenant_id, dims],
            )
            row = cursor.fetchone()
        return (row[0], row[1]) if row else (0, None)

    def search(self, *, tenant_id, embedding, model, k=5, collections=None) -> list[ChunkHit]:
        dims = len(embedding)
        self._check_dims(dims)
        try:
            rows, _own_index = self.tenant_plan(tenant_id, dims)
            if rows == 0:
                return []
            exact = rows < settings.RAG_EXACT_SEARCH_MAX_ROWS
            query = vector_literal(embedding)
            distance = f"{hnsw_expression(dims)} <=> %s::vector({dims})"
            # Inlined integers: the partial indexes' predicates must be visible at plan time.
            where = f"tenant_id = {int(tenant_id)} AND dims = {dims} AND model = %s"
            where_params: list = [model]
            if collections:
                where += " AND collection = ANY(%s)"
                where_params.append(list(collections))
            # `+ 0` hides the ordering from the HNSW index: exact search for small tenants.
            order, order_params = (f"({distance}) + 0", [query]) if exact else ("distance", [])
            sql = (
                f"SELECT id, source_id, collection, chunk_index, content, metadata, {distance} AS distance "
                f"FROM rag_chunks WHERE {where} ORDER BY {order} LIMIT %s"
            )
            # SET LOCAL (not a session SET): it cannot leak or be lost with a rolled-back transaction.
            scope = nullcontext() if exact else transaction.atomic(using=self.alias)
            with scope, self._cursor() as cursor:
                if not exact:
                    cursor.execute(
                        f"SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.ef_search = {EF_SEARCH}"
                    )
                cursor.execute(sql, [query, *where_params, *order_params, int(k)])
                found = cursor.fetchall()
        except DatabaseError as exc:
            raise VectorStoreUnavailable(f"pgvector search failed: {exc}") from exc
        hits = [
            ChunkHit(
                tenant_id=tenant_id, source_id=source_id, collection=collection, chunk_index=index,
                content=content, score=1.0 - float(dist), metadata=metadata or {}, chunk_id=chunk_id,
            )
            for chunk_id, source_id, collection, index, content, metadata, dist in found
        ]
        # relaxed_order may return neighbours slightly out of order.
        return sorted(hits, key=lambda hit: -hit.score)

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
        logger.info("Built partial HNSW index %s for tenant %s (%s rows)", name, tenant_id, rows)
        return name

"""Supabase backend: supabase-py (PostgREST over HTTPS) against the conventional `documents`
table and `match_documents` RPC, for deployments that only have SUPABASE_URL and the service
key. rag/sql/supabase.sql creates the table, its indexes and the functions used here.

Rows: {"content", "metadata": {tenant_id, source_id, collection, chunk_index, model, ...},
"embedding"}. Searches pass {"tenant_id", "model"} as the RPC's jsonb `filter`; deletes match
`metadata->>source_id` (and the tenant, so one tenant can never delete another's rows).
"""

from __future__ import annotations

import logging
from typing import Sequence

from django.conf import settings

from rag.vectorstore import ChunkHit, ChunkRecord, SourceSummary, VectorStoreUnavailable

logger = logging.getLogger(__name__)

TABLE = "documents"
MATCH_RPC = "match_documents"
SOURCES_RPC = "rag_list_sources"
INSERT_BATCH = 500


class SupabaseVectorStore:
    name = "supabase"

    def __init__(self, client):
        self.client = client

    @classmethod
    def from_settings(cls) -> "SupabaseVectorStore":
        if not (settings.SUPABASE_URL and settings.SUPABASE_SERVICE_KEY):
            raise VectorStoreUnavailable("Supabase vector store needs SUPABASE_URL and SUPABASE_SERVICE_KEY.")
        from supabase import create_client

        return cls(create_client(settings.SUPABASE_URL, settings.SUPABASE_SERVICE_KEY))

    def _run(self, what: str, request):
        from postgrest.exceptions import APIError

        try:
            return request.execute()
        except APIError as exc:
            raise VectorStoreUnavailable(f"Supabase {what} failed: {exc.message or exc}") from exc
        except Exception as exc:  # noqa: BLE001 - httpx transport errors and the like
            raise VectorStoreUnavailable(f"Supabase {what} failed: {type(exc).__name__}: {exc}") from exc

    def add(self, chunks: Sequence[ChunkRecord]) -> int:
        rows = [
            {
                "content": c.content,
                "metadata": {
                    **c.metadata, "tenant_id": c.tenant_id, "source_id": c.source_id, "collection": c.collection,
                    "chunk_index": c.chunk_index, "model": c.model, "dims": c.dims,
                },
                "embedding": [float(x) for x in c.embedding],
            }
            for c in chunks
        ]
        # Batches are separate requests: the ingestion pipeline deletes by source on any failure.
        for start in range(0, len(rows), INSERT_BATCH):
            self._run("insert", self.client.table(TABLE).insert(rows[start : start + INSERT_BATCH], returning="minimal"))
        return len(rows)

    def search(self, *, tenant_id, embedding, model, k=5, collections=None) -> list[ChunkHit]:
        params = {
            "query_embedding": [float(x) for x in embedding],
            "match_count": int(k),
            "filter": {"tenant_id": int(tenant_id), "model": model},
            "collections": list(collections) if collections else None,
        }
        response = self._run("search", self.client.rpc(MATCH_RPC, params))
        hits = []
        for row in response.data or []:
            metadata = row.get("metadata") or {}
            if int(metadata.get("tenant_id", -1)) != int(tenant_id):  # belt and braces over the RPC filter
                logger.error("match_documents returned a row of tenant %s for tenant %s", metadata.get("tenant_id"), tenant_id)
                continue
            hits.append(ChunkHit(
                tenant_id=int(tenant_id), source_id=int(metadata["source_id"]), collection=metadata.get("collection", ""),
                chunk_index=int(metadata.get("chunk_index", 0)), content=row.get("content", ""),
                score=float(row.get("similarity", 0.0)), metadata=metadata, chunk_id=row.get("id"),
            ))
        return hits

    def delete_by_source(self, *, tenant_id: int, source_id: int) -> int:
        request = (
            self.client.table(TABLE).delete(count="exact", returning="minimal")
            .eq("metadata->>tenant_id", str(int(tenant_id))).eq("metadata->>source_id", str(int(source_id)))
        )
        return int(self._run("delete", request).count or 0)

    def count(self, *, tenant_id: int | None = None) -> int:
        request = self.client.table(TABLE).select("id", count="exact", head=True)
        if tenant_id is not None:
            request = request.eq("metadata->>tenant_id", str(int(tenant_id)))
        return int(self._run("count", request).count or 0)

    def list_sources(self) -> list[SourceSummary]:
        response = self._run("list sources", self.client.rpc(SOURCES_RPC, {}))
        return [
            SourceSummary(int(r["tenant_id"]), int(r["source_id"]), int(r["chunks"]), tuple(r.get("models") or ()))
            for r in response.data or []
        ]

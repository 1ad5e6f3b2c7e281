"""One small interface over the vector stores: add, search, delete_by_source, count, list_sources.

Backends: `pgvector` (default; the `vectors` database alias) and `supabase` (supabase-py against
the conventional `documents` table and `match_documents` RPC, see rag/sql/supabase.sql).
Every row carries `tenant_id` and `source_id` (the RAGDocument id); every search is filtered by
tenant and by embedding model, so vectors of two models are never compared with each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from django.conf import settings


class VectorStoreUnavailable(RuntimeError):
    """The vector store could not be reached or refused the operation."""


@dataclass(frozen=True)
class ChunkRecord:
    tenant_id: int
    source_id: int
    collection: str
    chunk_index: int
    content: str
    embedding: Sequence[float]
    model: str
    metadata: dict = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return len(self.embedding)


@dataclass(frozen=True)
class ChunkHit:
    tenant_id: int
    source_id: int
    collection: str
    chunk_index: int
    content: str
    score: float  # cosine similarity, 1.0 = identical direction
    metadata: dict = field(default_factory=dict)
    chunk_id: int | str | None = None


@dataclass(frozen=True)
class SourceSummary:
    tenant_id: int
    source_id: int
    chunks: int
    models: tuple[str, ...] = ()


class VectorStore(Protocol):
    name: str

    def add(self, chunks: Sequence[ChunkRecord]) -> int: ...

    def search(
        self, *, tenant_id: int, embedding: Sequence[float], model: str, k: int = 5,
        collections: Sequence[str] | None = None,
    ) -> list[ChunkHit]: ...

    def delete_by_source(self, *, tenant_id: int, source_id: int) -> int: ...

    def count(self, *, tenant_id: int | None = None) -> int: ...

    def list_sources(self) -> list[SourceSummary]: ...


_override: VectorStore | None = None


def get_vector_store() -> VectorStore:
    """The configured backend (RAG_VECTOR_BACKEND); tests may swap it with use_vector_store()."""
    if _override is not None:
        return _override
    backend = settings.RAG_VECTOR_BACKEND
    if backend == "pgvector":
        from rag.vectorstore.pgvector import PgVectorStore

        return PgVectorStore()
    if backend == "supabase":
        from rag.vectorstore.supabase import SupabaseVectorStore

        return SupabaseVectorStore.from_settings()
    raise VectorStoreUnavailable(f"Unknown RAG_VECTOR_BACKEND '{backend}'. Allowed: pgvector, supabase.")


def use_vector_store(store: VectorStore | None) -> None:
    """Replace the backend for the whole process (tests, failure injection); None restores it."""
    global _override
    _override = store

"""Reads of the knowledge base: documents, search, and the drift between the two stores."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.cache import cache

from rag.embedders import embedder_for_tenant
from rag.models import Collection, DocumentStatus, RAGDocument
from rag.vectorstore import get_vector_store

DRIFT_CACHE_KEY = "rag:drift-count"
DRIFT_CACHE_SECONDS = 60


class EmptyQuery(ValueError):
    pass


def document_list(*, tenant_id: int):
    return RAGDocument.objects.for_tenant(tenant_id).select_related("uploaded_by")


def search_knowledge(
    *, tenant_id: int, query: str, collection: str | None = None, k: int = 5, include_shadow: bool = False
) -> list[dict]:
    """The tenant's best chunks for `query`, with score and source document.

    Shadow RAG chunks come back only when `include_shadow` (the agent enabled it), also when
    that collection is asked for by name.
    """
    query = (query or "").strip()
    if not query:
        raise EmptyQuery("The search query is empty.")
    if collection is not None and collection not in Collection.values:
        raise ValueError(f"Unknown collection '{collection}'. Allowed: {', '.join(Collection.values)}.")
    allowed = [c for c in Collection.values if include_shadow or c != Collection.SHADOW]
    collections = [collection] if collection else allowed
    if collection and collection not in allowed:
        return []
    embedder = embedder_for_tenant(tenant_id)
    hits = get_vector_store().search(
        tenant_id=tenant_id, embedding=embedder.embed_query(query), model=embedder.model, k=k,
        collections=collections,
    )
    documents = {
        d.pk: d
        for d in RAGDocument.objects.for_tenant(tenant_id).filter(
            pk__in={h.source_id for h in hits}, status=DocumentStatus.READY
        )
    }
    return [
        {
            "content": hit.content,
            "score": round(hit.score, 4),
            "collection": hit.collection,
            "chunk_index": hit.chunk_index,
            "document": {"id": hit.source_id, "filename": documents[hit.source_id].filename},
        }
        for hit in hits
        if hit.source_id in documents  # a row mid-delete or mid-re-ingest is not served
    ]


@dataclass
class DriftReport:
    orphan_sources: list[tuple[int, int]] = field(default_factory=list)  # vectors, no (usable) document
    missing_vectors: list[tuple[int, int]] = field(default_factory=list)  # ready document, wrong vectors
    stale_model: list[tuple[int, int]] = field(default_factory=list)  # ready, embedded by another model

    @property
    def count(self) -> int:
        return len(self.orphan_sources) + len(self.missing_vectors)


def drift_report(*, check_models: bool = False) -> DriftReport:
    """Compare every tenant's documents with the vector store (system code: unscoped)."""
    sources = {(s.tenant_id, s.source_id): s for s in get_vector_store().list_sources()}
    documents = {
        (d["tenant_id"], d["id"]): d
        for d in RAGDocument.dangerously_unscoped.values("id", "tenant_id", "status", "chunk_count", "embedding_model")
    }
    report = DriftReport()
    current_models: dict[int, str] = {}  # one embedder (vault lookup) per tenant
    for key in sorted(sources):
        document = documents.get(key)
        # Vectors of a failed document are as orphaned as those of a deleted one; pending and
        # processing documents may be mid-write.
        if document is None or document["status"] == DocumentStatus.FAILED:
            report.orphan_sources.append(key)
    for key, document in sorted(documents.items()):
        if document["status"] != DocumentStatus.READY:
            continue
        source = sources.get(key)
        if source is None or source.chunks != document["chunk_count"]:
            report.missing_vectors.append(key)
        elif check_models:
            if key[0] not in current_models:
                current_models[key[0]] = _current_model(key[0])
            if current_models[key[0]] and source.models != (current_models[key[0]],):
                report.stale_model.append(key)
    return report


def _current_model(tenant_id: int) -> str | None:
    from vault.credentials import CredentialNotConfigured

    try:
        return embedder_for_tenant(tenant_id).model
    except CredentialNotConfigured:
        return None  # the tenant lost its key: re-embedding would only fail, leave its vectors


def drift_count_cached() -> dict:
    """The /healthz probe: drift count, recomputed at most once a minute."""
    count = cache.get(DRIFT_CACHE_KEY)
    if count is None:
        count = drift_report().count
        cache.set(DRIFT_CACHE_KEY, count, DRIFT_CACHE_SECONDS)
    return {"drift": count}

"""The ingestion pipeline of one document: extract -> chunk -> embed -> write vectors -> ready.

Dual write, in this order: the metadata row already exists (the upload created it, pending);
the document's old vectors are removed and the new ones written (one COPY in one transaction on
pgvector); only then is the row marked ready. If the vector write fails, whatever may have been
written is deleted again and the row is marked failed with the reason, so no partial vectors
remain. A document deleted while it was being ingested gets its vectors removed at the end.
Anything that still slips through (a crash between the two stores) is found by rag_reconcile.
"""

from __future__ import annotations

import logging
from typing import Callable

from django.conf import settings
from django.db import transaction
from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag.embedders import EmbeddingError, embedder_for_tenant
from rag.extraction import UnreadableFile, UnsupportedFileType, extract_text, whatsapp_lines
from rag.models import Collection, DocumentStatus, RAGDocument
from rag.vectorstore import ChunkRecord, VectorStoreUnavailable, get_vector_store
from tenants.scoping import tenant_scope
from vault.credentials import CredentialNotConfigured

logger = logging.getLogger(__name__)


def document_text(document: RAGDocument, data: bytes | None = None) -> str:
    if data is None:
        with document.file.open("rb") as handle:
            data = handle.read()
    text = extract_text(data, document.filename)
    if document.collection == Collection.ADN_PERSONAL:
        lines = whatsapp_lines(text, document.person)
        if not lines:
            raise UnreadableFile(f"{document.filename} has no messages written by '{document.person}'.")
        text = "\n\n".join(lines)
    return text


def split_text(text: str) -> list[str]:
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=settings.RAG_CHUNK_SIZE, chunk_overlap=settings.RAG_CHUNK_OVERLAP
    )
    return [chunk for chunk in splitter.split_text(text) if chunk.strip()]


def _mark(document_id: int, **fields) -> int:
    return RAGDocument.objects.filter(pk=document_id).update(**fields)


def _fail(document: RAGDocument, reason: str) -> RAGDocument:
    logger.warning("RAG document %s of tenant %s failed: %s", document.pk, document.tenant_id, reason)
    _mark(document.pk, status=DocumentStatus.FAILED, error=reason[:2000], chunk_count=0)
    document.status, document.error, document.chunk_count = DocumentStatus.FAILED, reason, 0
    return document


def _remove_vectors_quietly(store, document: RAGDocument) -> None:
    try:
        store.delete_by_source(tenant_id=document.tenant_id, source_id=document.pk)
    except VectorStoreUnavailable:
        logger.exception("Could not clean the vectors of document %s; rag_reconcile will", document.pk)


def ingest_document(
    document_id: int, *, tenant_id: int, progress: Callable[[int, int], None] | None = None
) -> RAGDocument | None:
    """Run the whole pipeline for one document; returns it (ready or failed) or None if gone."""
    with tenant_scope(tenant_id):
        document = RAGDocument.objects.filter(pk=document_id).first()
        if document is None:
            logger.info("RAG document %s of tenant %s is gone; nothing to ingest", document_id, tenant_id)
            return None
        _mark(document.pk, status=DocumentStatus.PROCESSING, error="")
        store = get_vector_store()
        try:
            chunks = split_text(document_text(document))
            embedder = embedder_for_tenant(tenant_id)
            vectors = embedder.embed_documents(chunks)
        except (UnreadableFile, UnsupportedFileType, EmbeddingError) as exc:
            return _fail(document, str(exc))
        except CredentialNotConfigured as exc:
            return _fail(document, exc.public_message)
        if progress:
            progress(len(chunks), len(chunks))
        metadata = {"filename": document.filename, **({"agent_id": document.agent_id} if document.agent_id else {})}
        records = [
            ChunkRecord(
                tenant_id=tenant_id, source_id=document.pk, collection=document.collection, chunk_index=i,
                content=chunk, embedding=vector, model=embedder.model, metadata=metadata,
            )
            for i, (chunk, vector) in enumerate(zip(chunks, vectors))
        ]
        try:
            store.delete_by_source(tenant_id=tenant_id, source_id=document.pk)  # a re-ingest replaces
            store.add(records)
        except VectorStoreUnavailable as exc:
            _remove_vectors_quietly(store, document)
            return _fail(document, f"Vector store unavailable: {exc}")
        with transaction.atomic():
            marked = _mark(
                document.pk, status=DocumentStatus.READY, error="", chunk_count=len(records),
                embedding_model=embedder.model, embedding_dims=embedder.dims,
            )
        if not marked:  # deleted while we were embedding: its delete may have run before our write
            _remove_vectors_quietly(store, document)
            return None
        if hasattr(store, "maintain_tenant_index"):
            try:
                store.maintain_tenant_index(tenant_id, embedder.dims)
            except Exception:  # noqa: BLE001 - an index is an optimisation; the document is ready
                logger.exception("Could not build the HNSW index of tenant %s; the next ingestion retries", tenant_id)
        document.refresh_from_db()
        logger.info("RAG document %s of tenant %s ready: %s chunks", document.pk, tenant_id, len(records))
        return document

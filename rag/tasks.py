"""Background jobs of the knowledge base (procrastinate, queue "rag")."""

from __future__ import annotations

import logging

from procrastinate.contrib.django import app

from rag.ingestion import ingest_document
from rag.models import DocumentStatus, RAGDocument
from rag.services import create_shadow_document

logger = logging.getLogger(__name__)


@app.task(queue="rag", name="rag.ingest_document", pass_context=False)
def ingest_document_job(*, document_id: int, tenant_id: int) -> None:
    try:
        ingest_document(document_id, tenant_id=tenant_id)
    except Exception as exc:
        # Unexpected failures still end in a visible state with a retry action, never "processing".
        logger.exception("Ingestion of RAG document %s (tenant %s) crashed", document_id, tenant_id)
        RAGDocument.objects.for_tenant(tenant_id).filter(pk=document_id).update(
            status=DocumentStatus.FAILED, error=f"Internal error during ingestion ({type(exc).__name__}); retry it."
        )


@app.task(queue="rag", name="rag.index_shadow_messages", pass_context=False)
def index_shadow_messages_job(*, tenant_id: int, agent_id: int, messages: list[dict]) -> None:
    document = create_shadow_document(tenant_id=tenant_id, agent_id=agent_id, messages=messages)
    if document is not None:
        ingest_document_job(document_id=document.pk, tenant_id=tenant_id)

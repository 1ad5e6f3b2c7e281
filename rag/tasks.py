"""Background jobs of the knowledge base (procrastinate, queue "rag")."""

from __future__ import annotations

import logging

from procrastinate.contrib.django import app

from rag.ingestion import ingest_document
from rag.models import DocumentStatus, RAGDocument
from rag.selectors import drift_report
from rag.services import create_shadow_document, repair_drift, requeue_stuck_documents

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


@app.periodic(cron="*/30 * * * *", periodic_id="rag-reconcile")
@app.task(queue="rag", name="rag.reconcile", queueing_lock="rag-reconcile", pass_context=False)
def reconcile_job(timestamp: int) -> None:
    """Every 30 minutes: delete orphaned vectors, re-ingest documents whose vectors are missing
    or were embedded by a model the tenant no longer uses (re-embedded, never mixed), and
    re-queue documents left pending/processing by a worker that died."""
    report = drift_report(check_models=True)
    if report.count or report.stale_model:
        logger.warning(
            "RAG drift: %s orphan source(s), %s missing, %s stale model; repairing",
            len(report.orphan_sources), len(report.missing_vectors), len(report.stale_model),
        )
        repair_drift(report)
    requeue_stuck_documents()

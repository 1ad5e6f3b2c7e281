"""Writes of the knowledge base: upload, re-ingest, delete, Shadow RAG indexing.

Shadow RAG contract (for messaging, which may import this module; rag never imports messaging):

    index_conversation_messages(*, tenant_id, agent_id, messages) -> None

`messages` is a list of dicts with "id" (any unique message id), "conversation_id", "role"
("customer" | "agent" | "human" ...), "text" and optional "created_at" (ISO string). Call it
only for agents whose `shadow_rag_enabled` is on, after your transaction commits (it defers a
procrastinate job on queue "rag"; it never embeds inside the caller). Each call becomes one
Shadow RAG document; sending the same messages twice indexes them once (content hash).
Retrieval: `rag_search` includes the Shadow RAG collection only for agents that enable it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from rag.extraction import UnreadableFile, decode_text, file_kind, whatsapp_lines
from rag.models import Collection, DocumentStatus, RAGDocument
from rag.vectorstore import get_vector_store

logger = logging.getLogger(__name__)


class UploadTooLarge(ValueError):
    pass


class DuplicateDocument(ValueError):
    def __init__(self, existing: RAGDocument):
        self.existing = existing
        super().__init__(
            f"This file was already uploaded to {existing.collection} as document {existing.pk} "
            f"({existing.filename}); re-ingest that one instead."
        )


@dataclass(frozen=True)
class CheckedUpload:
    data: bytes
    filename: str
    content_hash: str


def check_upload(*, uploaded_file, collection: str, person: str = "") -> CheckedUpload:
    """Every cheap check an upload must pass before a row exists (size, type, text, person)."""
    if collection not in (Collection.GENERAL, Collection.ADN_PERSONAL):
        raise ValueError(f"Unknown collection '{collection}'. Uploads go to: General, ADN Personal.")
    filename = (uploaded_file.name or "").rsplit("/", 1)[-1].strip() or "upload"
    limit = settings.RAG_MAX_UPLOAD_MB * 1024 * 1024
    if uploaded_file.size is not None and uploaded_file.size > limit:
        raise UploadTooLarge(
            f"{filename} is {uploaded_file.size / 1048576:.1f} MB; the limit is {settings.RAG_MAX_UPLOAD_MB} MB."
        )
    kind = file_kind(filename)
    if collection == Collection.ADN_PERSONAL:
        if kind != "text" or not filename.lower().endswith(".txt"):
            raise UnreadableFile("ADN Personal takes a WhatsApp chat export (.txt).")
        if not person.strip():
            raise ValueError("ADN Personal needs `person`: whose lines of the chat to keep.")
    data = uploaded_file.read()
    if not data:
        raise UnreadableFile(f"{filename} is empty.")
    if kind in ("text", "html"):
        text = decode_text(data, filename)
        if not text.strip():
            raise UnreadableFile(f"{filename} contains no text.")
        if collection == Collection.ADN_PERSONAL and not whatsapp_lines(text, person):
            raise UnreadableFile(f"{filename} has no messages written by '{person.strip()}'.")
    elif kind == "pdf" and not data.startswith(b"%PDF-"):
        raise UnreadableFile(f"{filename} is not a PDF (it does not start with %PDF-).")
    elif kind == "docx" and not data.startswith(b"PK"):
        raise UnreadableFile(f"{filename} is not a .docx file (it is not a zip archive).")
    return CheckedUpload(data=data, filename=filename, content_hash=hashlib.sha256(data).hexdigest())


def _defer_ingestion(document: RAGDocument) -> None:
    from rag.tasks import ingest_document_job

    tenant_id, document_id = document.tenant_id, document.pk
    transaction.on_commit(
        lambda: ingest_document_job.configure(lock=f"rag-document-{document_id}").defer(
            document_id=document_id, tenant_id=tenant_id
        )
    )


def _create_document(*, tenant_id: int, checked: CheckedUpload, collection: str, defer: bool = True, **fields):
    existing = RAGDocument.objects.for_tenant(tenant_id).filter(
        collection=collection, content_hash=checked.content_hash
    ).first()
    if existing:
        raise DuplicateDocument(existing)
    try:
        with transaction.atomic():
            document = RAGDocument(
                tenant_id=tenant_id, filename=checked.filename, collection=collection,
                content_hash=checked.content_hash, status=DocumentStatus.PENDING, **fields,
            )
            document.file.save(checked.filename, ContentFile(checked.data), save=False)
            document.save()
            if defer:
                _defer_ingestion(document)
    except IntegrityError:  # a concurrent upload of the same bytes won the race
        raise DuplicateDocument(
            RAGDocument.objects.for_tenant(tenant_id).get(collection=collection, content_hash=checked.content_hash)
        ) from None
    logger.info("RAG document %s uploaded for tenant %s (%s)", document.pk, tenant_id, collection)
    return document


def upload_document(
    *, tenant_id: int, uploaded_file, collection: str = Collection.GENERAL, person: str = "",
    uploaded_by_id=None, defer: bool = True,
) -> RAGDocument:
    """Store the file and a pending row, then defer ingestion (after commit). 202-style."""
    checked = check_upload(uploaded_file=uploaded_file, collection=collection, person=person)
    return _create_document(
        tenant_id=tenant_id, checked=checked, collection=collection, person=person.strip(),
        uploaded_by_id=uploaded_by_id, defer=defer,
    )


def reingest_document(*, tenant_id: int, document_id: int) -> RAGDocument:
    """The retry action: back to pending, ingestion deferred again."""
    with transaction.atomic():
        document = RAGDocument.objects.for_tenant(tenant_id).select_for_update().get(pk=document_id)
        document.status, document.error = DocumentStatus.PENDING, ""
        document.save(update_fields=["status", "error", "updated_at"])
        _defer_ingestion(document)
    return document


def delete_document(*, tenant_id: int, document_id: int) -> bool:
    """Dual delete: vectors first, then the row and its file. Both steps are idempotent.

    If the vector store is down this raises VectorStoreUnavailable and keeps the row, so the
    delete can be retried and no vectors are left without a document.
    """
    document = RAGDocument.objects.for_tenant(tenant_id).filter(pk=document_id).first()
    get_vector_store().delete_by_source(tenant_id=tenant_id, source_id=document_id)
    if document is None:
        return False
    file_name, storage = document.file.name, document.file.storage
    document.delete()
    if file_name:
        transaction.on_commit(lambda: storage.delete(file_name))
    logger.info("RAG document %s of tenant %s deleted (vectors, row, file)", document_id, tenant_id)
    return True


def index_conversation_messages(*, tenant_id: int, agent_id: int, messages: list[dict]) -> None:
    """Queue Shadow RAG indexing of conversation messages (contract in the module docstring)."""
    cleaned = [
        {
            "id": str(m.get("id", "")), "conversation_id": m.get("conversation_id"),
            "role": str(m.get("role", "")), "text": str(m.get("text", "")).strip(),
            "created_at": str(m.get("created_at", "") or ""),
        }
        for m in messages
        if str(m.get("text", "")).strip()
    ]
    if not cleaned:
        return
    from rag.tasks import index_shadow_messages_job

    transaction.on_commit(
        lambda: index_shadow_messages_job.defer(tenant_id=int(tenant_id), agent_id=int(agent_id), messages=cleaned)
    )


def create_shadow_document(*, tenant_id: int, agent_id: int, messages: list[dict]) -> RAGDocument | None:
    """One Shadow RAG document for a batch of messages; None when these were indexed already."""
    text = "\n".join(f"{m['role']}: {m['text']}" for m in messages)
    conversations = sorted({str(m.get("conversation_id")) for m in messages})
    filename = f"conversation-{'-'.join(conversations)[:80]}-{messages[0]['id']}-{messages[-1]['id']}.txt"[:200]
    data = text.encode()
    checked = CheckedUpload(
        data=data, filename=filename,
        content_hash=hashlib.sha256(json.dumps([agent_id, text]).encode()).hexdigest(),
    )
    try:
        return _create_document(
            tenant_id=tenant_id, checked=checked, collection=Collection.SHADOW, agent_id=agent_id, defer=False
        )
    except DuplicateDocument:
        return None


STUCK_AFTER = timedelta(minutes=30)


def requeue_stuck_documents(*, older_than: timedelta = STUCK_AFTER) -> int:
    """Documents pending or processing for longer than any ingestion takes: queue them again."""
    stuck = RAGDocument.dangerously_unscoped.filter(
        status__in=[DocumentStatus.PENDING, DocumentStatus.PROCESSING], updated_at__lt=timezone.now() - older_than
    ).values_list("tenant_id", "id")
    count = 0
    for tenant_id, document_id in stuck:
        reingest_document(tenant_id=tenant_id, document_id=document_id)
        count += 1
    if count:
        logger.warning("Re-queued %s RAG document(s) stuck in pending/processing", count)
    return count


def repair_drift(report) -> dict[str, int]:
    """Delete orphaned vectors; re-ingest ready documents whose vectors are missing or stale."""
    store = get_vector_store()
    for tenant_id, source_id in report.orphan_sources:
        store.delete_by_source(tenant_id=tenant_id, source_id=source_id)
    reingested = 0
    for tenant_id, document_id in [*report.missing_vectors, *report.stale_model]:
        reingest_document(tenant_id=tenant_id, document_id=document_id)
        reingested += 1
    from rag.selectors import DRIFT_CACHE_KEY
    from django.core.cache import cache

    cache.delete(DRIFT_CACHE_KEY)
    return {"orphans_deleted": len(report.orphan_sources), "reingested": reingested}

"""Small builders shared by the knowledge-base tests."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from rag import services
from rag.ingestion import ingest_document

RETURNS_POLICY = (
    "Returns policy: customers may return unused products within 30 days of delivery. "
    "Refunds are paid to the original payment method within 5 business days."
)


def upload(client, name: str, data: bytes, collection: str = "General", **extra):
    return client.post(
        "/api/v1/rag/documents/",
        {"file": SimpleUploadedFile(name, data), "collection": collection, **extra},
        format="multipart",
    )


def ingest_text(tenant, text: str, name: str = "notes.txt", collection: str = "General", **extra):
    """Upload and ingest inline (no job queue): for tests about search and drift."""
    document = services.upload_document(
        tenant_id=tenant.pk, uploaded_file=SimpleUploadedFile(name, text.encode()), collection=collection,
        defer=False, **extra,
    )
    return ingest_document(document.pk, tenant_id=tenant.pk)

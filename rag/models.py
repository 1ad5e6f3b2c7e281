"""Document metadata of the knowledge base (the vectors live behind rag.vectorstore)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tenants.models import TenantScopedModel


class Collection(models.TextChoices):
    GENERAL = "General", "General"
    ADN_PERSONAL = "ADN Personal", "ADN Personal"
    SHADOW = "Shadow RAG", "Shadow RAG"


class DocumentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


def document_upload_path(instance: "RAGDocument", filename: str) -> str:
    # Per-tenant folders keep storage listings and retention per shop simple.
    return f"rag/{instance.tenant_id}/{instance.content_hash[:2]}/{instance.content_hash[:16]}-{filename}"


class RAGDocument(TenantScopedModel):
    """One uploaded file (or one batch of conversation messages for Shadow RAG)."""

    filename = models.CharField(max_length=255)
    collection = models.CharField(max_length=20, choices=Collection.choices, default=Collection.GENERAL)
    status = models.CharField(max_length=12, choices=DocumentStatus.choices, default=DocumentStatus.PENDING)
    error = models.TextField(blank=True, default="")
    file = models.FileField(upload_to=document_upload_path, max_length=400)
    content_hash = models.CharField(max_length=64, help_text="SHA-256 of the uploaded bytes")
    # ADN Personal keeps only this person's lines of a WhatsApp chat export.
    person = models.CharField(max_length=120, blank=True, default="")
    # Shadow RAG documents belong to the agent whose conversations they come from.
    agent_id = models.BigIntegerField(null=True, blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    embedding_model = models.CharField(max_length=80, blank=True, default="")
    embedding_dims = models.PositiveSmallIntegerField(null=True, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "rag_documents"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "collection", "content_hash"], name="rag_document_unique_content_per_collection"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=DocumentStatus.values), name="rag_document_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["tenant", "status"], name="rag_document_tenant_status")]

    def __str__(self) -> str:
        return f"{self.filename} ({self.collection})"

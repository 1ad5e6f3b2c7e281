"""Admin: upload (the add form), status at a glance, re-ingest action, dual delete."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from rag import services
from rag.extraction import UnreadableFile, UnsupportedFileType
from rag.models import Collection, RAGDocument
from rag.vectorstore import VectorStoreUnavailable
from tenants.admin_base import TenantScopedAdmin, is_platform_admin, request_tenant_id

READONLY = (
    "filename", "status", "error", "chunk_count", "content_hash", "embedding_model", "embedding_dims",
    "uploaded_by", "agent_id", "created_at", "updated_at",
)


class UploadForm(forms.ModelForm):
    collection = forms.ChoiceField(choices=[(Collection.GENERAL, "General"), (Collection.ADN_PERSONAL, "ADN Personal")])

    request_tenant_id: int | None = None  # set per request by RAGDocumentAdmin.get_form

    class Meta:
        model = RAGDocument
        fields = ["tenant", "file", "collection", "person"]

    def clean(self):
        """Run the upload checks here so the admin shows them next to the field."""
        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload is None:
            return cleaned
        tenant = cleaned.get("tenant")
        tenant_id = self.request_tenant_id or (tenant.pk if tenant else None)
        try:
            checked = services.check_upload(
                uploaded_file=upload, collection=cleaned.get("collection") or Collection.GENERAL,
                person=cleaned.get("person") or "",
            )
            existing = tenant_id and RAGDocument.objects.for_tenant(tenant_id).filter(
                collection=cleaned.get("collection"), content_hash=checked.content_hash
            ).first()
            if existing:
                raise services.DuplicateDocument(existing)
        except (UnsupportedFileType, UnreadableFile, ValueError) as exc:
            self.add_error("file", str(exc))
        finally:
            upload.seek(0)
        return cleaned


@admin.register(RAGDocument)
class RAGDocumentAdmin(TenantScopedAdmin):
    list_display = ("filename", "collection", "status", "chunk_count", "uploaded_by", "created_at")
    list_filter = ("collection", "status")
    search_fields = ("filename",)
    actions = ["reingest_selected"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = type("TenantUploadForm", (UploadForm,), {"request_tenant_id": request_tenant_id(request)})
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["tenant", "file", "collection", "person"] if is_platform_admin(request) else ["file", "collection", "person"]
        return ["collection", "person", *READONLY]

    def get_readonly_fields(self, request, obj=None):
        return ("collection", "person", *READONLY) if obj is not None else ()

    def save_model(self, request, obj, form, change):
        if change:
            return  # documents are immutable; re-ingest or delete them
        tenant_id = obj.tenant_id if is_platform_admin(request) else request_tenant_id(request)
        document = services.upload_document(
            tenant_id=tenant_id, uploaded_file=form.cleaned_data["file"],
            collection=form.cleaned_data["collection"], person=form.cleaned_data.get("person") or "",
            uploaded_by_id=request.user.pk,
        )
        obj.pk = document.pk
        obj._state.adding = False
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        try:
            services.delete_document(tenant_id=obj.tenant_id, document_id=obj.pk)
        except VectorStoreUnavailable as exc:
            self.message_user(request, f"{obj.filename} was kept: {exc}", messages.ERROR)

    def delete_queryset(self, request, queryset):
        for document in queryset:
            self.delete_model(request, document)

    @admin.action(description="Re-ingest selected documents")
    def reingest_selected(self, request, queryset):
        for document in queryset:
            services.reingest_document(tenant_id=document.tenant_id, document_id=document.pk)
        self.message_user(request, f"{queryset.count()} document(s) queued for ingestion.")

"""Knowledge-base API: documents (upload 202, list, detail, delete, re-ingest) and search."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from rag import services
from rag.embedders import EmbeddingError
from rag.extraction import UnreadableFile, UnsupportedFileType
from rag.models import RAGDocument
from rag.selectors import EmptyQuery, search_knowledge
from rag.serializers import DocumentOutput, SearchHit, SearchInput, UploadInput
from rag.vectorstore import VectorStoreUnavailable
from tenants.api_base import TenantAPIView, TenantScopedGenericViewSet
from vault.credentials import CredentialNotConfigured


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "file_too_large"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "duplicate"


class StoreUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "vector_store_unavailable"


class RAGDocumentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedGenericViewSet):
    model = RAGDocument
    serializer_class = DocumentOutput
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def scope_queryset(self, queryset):
        return queryset.select_related("uploaded_by")

    @extend_schema(request={"multipart/form-data": UploadInput}, responses={202: DocumentOutput})
    def create(self, request, *args, **kwargs):
        upload = UploadInput(data=request.data)
        upload.is_valid(raise_exception=True)
        try:
            document = services.upload_document(
                tenant_id=self.tenant_id, uploaded_file=upload.validated_data["file"],
                collection=upload.validated_data["collection"], person=upload.validated_data["person"],
                uploaded_by_id=request.user.pk,
            )
        except UnsupportedFileType as exc:
            raise exceptions.UnsupportedMediaType(upload.validated_data["file"].content_type or "", detail=str(exc))
        except services.UploadTooLarge as exc:
            raise PayloadTooLarge(str(exc))
        except services.DuplicateDocument as exc:
            raise Conflict(str(exc))
        except (UnreadableFile, ValueError) as exc:
            raise exceptions.ValidationError({"file": [str(exc)]})
        return Response(DocumentOutput(document).data, status=status.HTTP_202_ACCEPTED)

    def destroy(self, request, *args, **kwargs):
        document = self.get_object()
        try:
            services.delete_document(tenant_id=self.tenant_id, document_id=document.pk)
        except VectorStoreUnavailable as exc:
            raise StoreUnavailable(f"{exc}; the document was kept, retry the delete.")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: DocumentOutput})
    @action(detail=True, methods=["post"])
    def reingest(self, request, *args, **kwargs):
        document = self.get_object()
        document = services.reingest_document(tenant_id=self.tenant_id, document_id=document.pk)
        return Response(DocumentOutput(document).data, status=status.HTTP_202_ACCEPTED)


class RAGSearchView(TenantAPIView):
    @extend_schema(
        request=SearchInput,
        responses=inline_serializer("SearchOutput", {"results": SearchHit(many=True)}),
    )
    def post(self, request):
        data = SearchInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            hits = search_knowledge(
                tenant_id=self.tenant_id, query=data.validated_data["query"],
                collection=data.validated_data.get("collection"), k=data.validated_data["k"],
            )
        except EmptyQuery as exc:
            raise exceptions.ValidationError({"query": [exceptions.ErrorDetail(str(exc), code="empty_query")]})
        except CredentialNotConfigured as exc:
            raise exceptions.ValidationError({"embedder": [exc.public_message]})
        except (EmbeddingError, VectorStoreUnavailable) as exc:
            raise StoreUnavailable(str(exc))
        return Response({"results": hits})

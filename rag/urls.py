from django.urls import path
from rest_framework.routers import SimpleRouter

from rag.api import RAGDocumentViewSet, RAGSearchView

router = SimpleRouter()
router.register("rag/documents", RAGDocumentViewSet, basename="rag-document")

urlpatterns = [
    path("rag/search/", RAGSearchView.as_view(), name="rag-search"),
    *router.urls,
]

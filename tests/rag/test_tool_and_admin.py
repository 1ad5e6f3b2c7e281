"""rag_search through the agents' registry, and the admin: upload, status, re-ingest, delete."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from agents.registry import ToolContext, get_registered_tool
from rag.models import DocumentStatus, RAGDocument
from rag.vectorstore import get_vector_store
from tests.rag.conftest import make_pdf
from tests.rag.helpers import RETURNS_POLICY, ingest_text

pytestmark = pytest.mark.django_db(databases=["default", "vectors"])


def _rag_search(tenant, **agent_settings):
    registered = get_registered_tool("rag_search")
    ctx = ToolContext(tenant_id=tenant.pk, agent_id=1, agent_settings=agent_settings)
    return registered.factory(ctx, dict(registered.default_config))


def _call(tool, **args) -> str:
    # async_to_sync keeps the tool's sync_to_async DB work on this thread (the test's transaction).
    return async_to_sync(tool.ainvoke)(args)


def test_rag_search_is_registered_with_only_model_arguments(tenant_a):
    registered = get_registered_tool("rag_search")
    assert registered.app_label == "rag" and registered.default_config == {"timeout": 10}
    assert "rag_search" in registered.prompt_injection
    tool = _rag_search(tenant_a)
    assert set(tool.args) == {"query", "collection"}


def test_rag_search_finds_only_the_bound_tenants_documents(tenant_a, tenant_b):
    ingest_text(tenant_a, RETURNS_POLICY, name="returns-a.txt")
    ingest_text(tenant_b, RETURNS_POLICY, name="returns-b.txt")
    results = json.loads(_call(_rag_search(tenant_a), query="how many days to return a product"))
    assert results and {r["source"] for r in results} == {"returns-a.txt"}
    assert "30 days" in results[0]["content"]


def test_rag_search_explains_empty_queries_and_empty_results(tenant_a):
    tool = _rag_search(tenant_a)
    assert "empty" in _call(tool, query="  ")
    assert _call(tool, query="anything") == "No passages found in the knowledge base."


def test_shadow_results_only_for_agents_that_enable_them(tenant_a):
    from rag.services import create_shadow_document
    from rag.ingestion import ingest_document

    shadow = create_shadow_document(tenant_id=tenant_a.pk, agent_id=1, messages=[
        {"id": 1, "conversation_id": 2, "role": "agent", "text": "We gift-wrap orders for free on request."}
    ])
    ingest_document(shadow.pk, tenant_id=tenant_a.pk)
    assert _call(_rag_search(tenant_a), query="gift-wrap") == "No passages found in the knowledge base."
    found = json.loads(_call(_rag_search(tenant_a, shadow_rag_enabled=True), query="gift-wrap"))
    assert found[0]["collection"] == "Shadow RAG"


def test_staff_uploads_a_pdf_in_the_admin_and_it_becomes_ready(
    user_a, tenant_a, jobs, django_capture_on_commit_callbacks
):
    client = Client()
    client.force_login(user_a)
    assert client.get("/admin/rag/ragdocument/add/").status_code == 200
    pdf = make_pdf(["Warranty: every blender has twelve months of warranty."])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/rag/ragdocument/add/", {
            "file": SimpleUploadedFile("warranty.pdf", pdf, content_type="application/pdf"),
            "collection": "General", "person": "",
        })
    assert response.status_code == 302, response.content.decode()[:2000]
    document = RAGDocument.objects.for_tenant(tenant_a.pk).get()
    assert (document.filename, document.status, document.uploaded_by_id) == ("warranty.pdf", "pending", user_a.pk)
    jobs.run_all()
    document.refresh_from_db()
    assert document.status == DocumentStatus.READY

    page = client.get("/admin/rag/ragdocument/").content.decode()
    assert "warranty.pdf" in page and "ready" in page.lower()
    assert client.get(f"/admin/rag/ragdocument/{document.pk}/change/").status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/rag/ragdocument/", {"action": "reingest_selected", "_selected_action": [document.pk]})
    assert len(jobs.todo("rag.ingest_document")) == 1
    jobs.run_all()

    found = json.loads(_call(_rag_search(tenant_a), query="blender warranty"))
    assert found[0]["source"] == "warranty.pdf"

    assert client.post(f"/admin/rag/ragdocument/{document.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not RAGDocument.dangerously_unscoped.exists()
    assert get_vector_store().count(tenant_id=tenant_a.pk) == 0


def test_admin_upload_shows_bad_input_next_to_the_field(user_a, tenant_a):
    client = Client()
    client.force_login(user_a)
    ingest_text(tenant_a, RETURNS_POLICY, name="returns.txt")
    for name, data, message in (
        ("virus.exe", b"MZ", "Unsupported file type"),
        ("returns.txt", RETURNS_POLICY.encode(), "already uploaded"),
        ("empty.txt", b"", "empty"),
    ):
        response = client.post("/admin/rag/ragdocument/add/", {
            "file": SimpleUploadedFile(name, data), "collection": "General", "person": "",
        })
        assert response.status_code == 200 and message in response.content.decode(), name
    assert RAGDocument.objects.for_tenant(tenant_a.pk).count() == 1

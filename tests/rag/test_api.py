"""Upload -> job -> ready -> search -> delete through the API, and every bad input."""

from __future__ import annotations

import pytest

from rag.models import DocumentStatus, RAGDocument
from rag.vectorstore import get_vector_store
from tests.rag.conftest import make_pdf
from tests.rag.helpers import RETURNS_POLICY, ingest_text, upload

pytestmark = pytest.mark.django_db(databases=["default", "vectors"])


def test_pdf_upload_becomes_ready_through_the_job_and_is_found(api_a, tenant_a, jobs, django_capture_on_commit_callbacks):
    pdf = make_pdf(["Shipping policy", "We ship to every province within 72 hours.", "Express costs 10 USD."])
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(api_a, "shipping.pdf", pdf)
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "pending" and body["collection"] == "General" and body["uploaded_by"] == "alice"
    [job] = jobs.todo("rag.ingest_document")
    assert job["args"] == {"document_id": body["id"], "tenant_id": tenant_a.pk}
    assert job["queue_name"] == "rag" and job["lock"] == f"rag-document-{body['id']}"

    assert jobs.run_all() == 1
    detail = api_a.get(f"/api/v1/rag/documents/{body['id']}/").json()
    assert detail["status"] == "ready", detail
    assert detail["chunk_count"] >= 1 and detail["embedding_model"] == "local-hash-384"

    found = api_a.post("/api/v1/rag/search/", {"query": "ship within 72 hours"}, format="json")
    assert found.status_code == 200
    [best, *_] = found.json()["results"]
    assert best["document"] == {"id": body["id"], "filename": "shipping.pdf"}
    assert "72 hours" in best["content"] and 0 < best["score"] <= 1

    listing = api_a.get("/api/v1/rag/documents/").json()
    assert [d["id"] for d in listing["results"]] == [body["id"]]


def test_delete_removes_vectors_then_metadata(api_a, tenant_a):
    document = ingest_text(tenant_a, RETURNS_POLICY)
    store = get_vector_store()
    assert store.count(tenant_id=tenant_a.pk) == document.chunk_count > 0
    assert api_a.delete(f"/api/v1/rag/documents/{document.pk}/").status_code == 204
    assert store.count(tenant_id=tenant_a.pk) == 0
    assert not RAGDocument.dangerously_unscoped.filter(pk=document.pk).exists()
    assert api_a.delete(f"/api/v1/rag/documents/{document.pk}/").status_code == 404


def test_reingest_action_queues_the_job_again(api_a, tenant_a, jobs, django_capture_on_commit_callbacks):
    document = ingest_text(tenant_a, RETURNS_POLICY)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_a.post(f"/api/v1/rag/documents/{document.pk}/reingest/")
    assert response.status_code == 202 and response.json()["status"] == "pending"
    jobs.run_all()
    document.refresh_from_db()
    assert document.status == DocumentStatus.READY
    assert get_vector_store().count(tenant_id=tenant_a.pk) == document.chunk_count  # replaced, not doubled


def test_search_sees_only_the_callers_tenant(api_a, api_b, tenant_a, tenant_b):
    mine = ingest_text(tenant_a, RETURNS_POLICY, name="a.txt")
    theirs = ingest_text(tenant_b, RETURNS_POLICY, name="b.txt")
    for client, expected in ((api_a, mine), (api_b, theirs)):
        results = client.post("/api/v1/rag/search/", {"query": "return within 30 days"}, format="json").json()["results"]
        assert results and {r["document"]["id"] for r in results} == {expected.pk}


@pytest.mark.parametrize(
    "name,data,status,code,words",
    [
        ("tool.exe", b"MZ...", 415, "unsupported_media_type", [".pdf", ".docx", ".txt"]),
        ("empty.txt", b"", 400, None, ["empty"]),
        ("latin1.txt", "caf\xe9 ol\xe9".encode("latin-1"), 400, None, ["UTF-8"]),
        ("fake.pdf", b"hello, not a pdf", 400, None, ["%PDF-"]),
    ],
)
def test_bad_uploads_are_refused_with_a_clear_error(api_a, name, data, status, code, words):
    response = upload(api_a, name, data)
    assert response.status_code == status, response.json()
    body = response.json()
    assert all(word in body["detail"] for word in words), body
    if code:
        assert body["code"] == code
    assert not RAGDocument.dangerously_unscoped.exists()


def test_oversized_upload_answers_413(api_a, settings):
    settings.RAG_MAX_UPLOAD_MB = 1
    response = upload(api_a, "big.txt", b"a" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert "limit is 1 MB" in response.json()["detail"]


def test_same_file_twice_is_detected(api_a, tenant_a):
    assert upload(api_a, "policy.txt", RETURNS_POLICY.encode()).status_code == 202
    again = upload(api_a, "policy-copy.txt", RETURNS_POLICY.encode())
    assert again.status_code == 409 and again.json()["code"] == "duplicate"
    assert "already uploaded" in again.json()["detail"]


def test_adn_personal_needs_a_person_with_lines_in_the_chat(api_a):
    chat = b"12/31/23, 9:15 PM - Maria: Hola! Gracias por tu compra\n12/31/23, 9:16 PM - Juan: ok\n"
    missing = upload(api_a, "chat.txt", chat, collection="ADN Personal")
    assert missing.status_code == 400 and "person" in missing.json()["detail"]
    nobody = upload(api_a, "chat.txt", chat, collection="ADN Personal", person="Pedro")
    assert nobody.status_code == 400 and "Pedro" in nobody.json()["detail"]
    assert upload(api_a, "chat.txt", chat, collection="ADN Personal", person="Maria").status_code == 202


def test_search_with_an_empty_query_answers_400(api_a):
    response = api_a.post("/api/v1/rag/search/", {"query": "   "}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "empty_query" and "empty" in response.json()["detail"]

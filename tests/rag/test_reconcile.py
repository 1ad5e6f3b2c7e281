"""Drift between rag_documents and the vectors: reported, repaired, and shown on /healthz."""

from __future__ import annotations

import io

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command

from rag.models import DocumentStatus, RAGDocument
from rag.selectors import drift_report
from rag.vectorstore import ChunkRecord, get_vector_store
from tests.rag.conftest import make_pdf
from tests.rag.helpers import RETURNS_POLICY, ingest_text

pytestmark = pytest.mark.django_db(databases=["default", "vectors"])


def _orphan(tenant_id: int, source_id: int):
    get_vector_store().add([
        ChunkRecord(tenant_id=tenant_id, source_id=source_id, collection="General", chunk_index=0,
                    content="left behind", embedding=[1.0] + [0.0] * 383, model="local-hash-384")
    ])


def _reconcile(*args) -> str:
    out = io.StringIO()
    call_command("rag_reconcile", *args, stdout=out)
    return out.getvalue()


def test_reconcile_reports_and_repairs_both_kinds_of_drift(tenant_a, tenant_b, jobs, django_capture_on_commit_callbacks):
    healthy = ingest_text(tenant_a, RETURNS_POLICY)
    lost = ingest_text(tenant_b, "Opening hours: 9 to 18, Monday to Saturday.")
    get_vector_store().delete_by_source(tenant_id=tenant_b.pk, source_id=lost.pk)  # ready, no vectors
    _orphan(tenant_a.pk, 987654)  # vectors, no document

    report = _reconcile()
    assert f"orphan vectors: tenant {tenant_a.pk} source 987654" in report
    assert f"missing vectors: tenant {tenant_b.pk} document {lost.pk}" in report
    assert "drift: 2" in report

    with django_capture_on_commit_callbacks(execute=True):
        fixed = _reconcile("--fix")
    assert "1 orphan source(s) deleted, 1 re-ingest(s) queued" in fixed
    jobs.run_all()
    assert "drift: 0" in _reconcile()
    lost.refresh_from_db()
    assert lost.status == DocumentStatus.READY and get_vector_store().count(tenant_id=tenant_b.pk) == lost.chunk_count
    assert get_vector_store().count(tenant_id=tenant_a.pk) == healthy.chunk_count


def test_vectors_of_a_failed_document_count_as_orphans(tenant_a):
    document = ingest_text(tenant_a, RETURNS_POLICY)
    RAGDocument.objects.for_tenant(tenant_a.pk).filter(pk=document.pk).update(status=DocumentStatus.FAILED)
    assert drift_report().orphan_sources == [(tenant_a.pk, document.pk)]


def test_stale_embedding_model_is_listed_with_models(tenant_a):
    document = ingest_text(tenant_a, RETURNS_POLICY)
    RAGDocument.objects.for_tenant(tenant_a.pk).filter(pk=document.pk).update(embedding_model="older-model")
    get_vector_store().delete_by_source(tenant_id=tenant_a.pk, source_id=document.pk)
    _orphan_like = ChunkRecord(tenant_id=tenant_a.pk, source_id=document.pk, collection="General", chunk_index=0,
                               content="x", embedding=[0.0, 1.0] + [0.0] * 382, model="older-model")
    get_vector_store().add([_orphan_like] * document.chunk_count)
    assert drift_report(check_models=True).stale_model == [(tenant_a.pk, document.pk)]
    assert "stale model: 1" in _reconcile("--models")


def test_healthz_reports_the_drift_count(client, tenant_a):
    cache.clear()
    _orphan(tenant_a.pk, 4242)
    body = client.get("/healthz").json()
    assert body["rag_drift"] == {"drift": 1}


def test_rag_ingest_command_ingests_a_directory_with_a_progress_bar(tenant_a, tmp_path, capsys):
    (tmp_path / "faq.md").write_text("# FAQ\n\nWe accept credit cards and bank transfers.")
    (tmp_path / "manual.pdf").write_bytes(make_pdf(["Warranty: twelve months on every blender."]))
    (tmp_path / "ignored.bin").write_bytes(b"\x00\x01")
    out = io.StringIO()
    call_command("rag_ingest", str(tmp_path), "--tenant", tenant_a.slug, "--collection", "General", stdout=out)
    assert "2 ready, 0 failed, 0 skipped" in out.getvalue()
    assert "2/2" in capsys.readouterr().err  # tqdm's bar
    assert RAGDocument.objects.for_tenant(tenant_a.pk).filter(status="ready").count() == 2
    assert "drift: 0" in _reconcile()


def test_rag_ingest_command_names_a_missing_tenant(tmp_path):
    with pytest.raises(CommandError, match="Tenant 'nope' not found"):
        call_command("rag_ingest", str(tmp_path), "--tenant", "nope")


def test_documents_stuck_in_processing_are_requeued(tenant_a, jobs, django_capture_on_commit_callbacks):
    from datetime import timedelta

    from django.utils import timezone

    from rag.tasks import reconcile_job

    document = ingest_text(tenant_a, RETURNS_POLICY)
    fresh = ingest_text(tenant_a, "Opening hours: 9 to 18.", name="hours.txt")
    RAGDocument.objects.for_tenant(tenant_a.pk).filter(pk=document.pk).update(
        status=DocumentStatus.PROCESSING, updated_at=timezone.now() - timedelta(hours=2)
    )
    RAGDocument.objects.for_tenant(tenant_a.pk).filter(pk=fresh.pk).update(status=DocumentStatus.PROCESSING)
    with django_capture_on_commit_callbacks(execute=True):
        reconcile_job(timestamp=0)
    assert [job["args"]["document_id"] for job in jobs.todo("rag.ingest_document")] == [document.pk]
    jobs.run_all()
    document.refresh_from_db()
    assert document.status == DocumentStatus.READY

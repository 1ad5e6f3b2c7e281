"""manage.py rag_reconcile [--fix] [--models]

Lists drift between rag_documents and the vector store: vectors without a (usable) document and
ready documents whose vectors are missing or incomplete; --models also lists documents embedded
by a model other than the tenant's current one. --fix deletes the orphans and re-ingests the rest.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from rag.selectors import drift_report
from rag.services import repair_drift


class Command(BaseCommand):
    help = "Report (and with --fix repair) drift between document metadata and vectors."

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true")
        parser.add_argument("--models", action="store_true", help="also check for stale embedding models")

    def handle(self, *args, fix, models, **options):
        report = drift_report(check_models=models)
        for tenant_id, source_id in report.orphan_sources:
            self.stdout.write(f"orphan vectors: tenant {tenant_id} source {source_id}")
        for tenant_id, document_id in report.missing_vectors:
            self.stdout.write(f"missing vectors: tenant {tenant_id} document {document_id}")
        for tenant_id, document_id in report.stale_model:
            self.stdout.write(f"stale model: tenant {tenant_id} document {document_id}")
        self.stdout.write(f"drift: {report.count}" + (f", stale model: {len(report.stale_model)}" if models else ""))
        if fix and (report.count or report.stale_model):
            result = repair_drift(report)
            self.stdout.write(
                f"fixed: {result['orphans_deleted']} orphan source(s) deleted, {result['reingested']} re-ingest(s) queued"
            )

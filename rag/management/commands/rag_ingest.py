"""manage.py rag_ingest PATH --tenant SLUG [--collection General] [--person NAME]

Uploads a file, or every supported file under a directory, and ingests it right here (no worker
needed), with a progress bar. Duplicates and unreadable files are reported and skipped.
"""

from __future__ import annotations

from pathlib import Path

from django.core.files import File
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from rag import services
from rag.extraction import KINDS, UnreadableFile, UnsupportedFileType
from rag.ingestion import ingest_document
from rag.models import Collection, DocumentStatus
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Ingest a file or a directory of files into a tenant's knowledge base."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--collection", default=Collection.GENERAL, choices=[Collection.GENERAL, Collection.ADN_PERSONAL])
        parser.add_argument("--person", default="", help="ADN Personal: whose lines of the chat export to keep")

    def handle(self, *args, path, tenant, collection, person, **options):
        tenant_row = Tenant.objects.filter(slug=tenant).first()
        if tenant_row is None:
            raise CommandError(f"Tenant '{tenant}' not found.")
        root = Path(path)
        if not root.exists():
            raise CommandError(f"{root} does not exist.")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in KINDS) if root.is_dir() else [root]
        if not files:
            raise CommandError(f"No supported files under {root} (supported: {', '.join(sorted(KINDS))}).")
        ready = failed = skipped = 0
        for file_path in tqdm(files, unit="file", disable=options.get("verbosity", 1) == 0):
            try:
                with file_path.open("rb") as handle:
                    document = services.upload_document(
                        tenant_id=tenant_row.pk, uploaded_file=File(handle, name=file_path.name),
                        collection=collection, person=person, defer=False,
                    )
            except (UnsupportedFileType, UnreadableFile, ValueError) as exc:
                tqdm.write(f"skipped {file_path}: {exc}")
                skipped += 1
                continue
            result = ingest_document(document.pk, tenant_id=tenant_row.pk)
            if result is not None and result.status == DocumentStatus.READY:
                ready += 1
            else:
                failed += 1
                tqdm.write(f"failed {file_path}: {result.error if result else 'document vanished'}")
        self.stdout.write(f"{ready} ready, {failed} failed, {skipped} skipped (tenant {tenant}, {collection}).")
        if failed:
            raise CommandError(f"{failed} file(s) failed; see the messages above.")

"""Re-encrypt every vault row under the first FIELD_ENCRYPTION_KEY (new key first in the list)."""

from django.core.management.base import BaseCommand
from django.db import transaction
from tqdm import tqdm

from vault.credentials import invalidate_cache
from vault.models import Credential, KeyCanary


class Command(BaseCommand):
    help = "Re-encrypt every credential under the first key of FIELD_ENCRYPTION_KEY."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")

    def handle(self, *args, batch_size, no_progress, **options):
        rows = Credential.dangerously_unscoped.order_by("pk")
        total = rows.count()
        rotated = 0
        with tqdm(total=total, unit="credential", disable=no_progress, file=self.stderr) as bar:
            ids = list(rows.values_list("pk", flat=True))
            for start in range(0, len(ids), batch_size):
                with transaction.atomic():
                    batch = Credential.dangerously_unscoped.select_for_update().filter(pk__in=ids[start:start + batch_size])
                    for credential in batch:
                        # Decrypts with any configured key; saving encrypts with the first one.
                        credential.save(update_fields=["value"])
                        rotated += 1
                        bar.update(1)
        for canary in KeyCanary.objects.all():
            canary.save(update_fields=["token"])
        invalidate_cache()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} of {total} credentials under the first key."))

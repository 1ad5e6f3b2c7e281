"""Upsert the global Tool rows from the tools registry (safe to run on every deploy)."""

from django.core.management.base import BaseCommand
from django.db import transaction

from agents.models import Tool
from agents.registry import registered_tools


class Command(BaseCommand):
    help = "Create or update the global Tool rows from the registry; staff-edited config keys are kept."

    def handle(self, *args, **options):
        created = updated = 0
        with transaction.atomic():
            for name, entry in sorted(registered_tools().items()):
                # Global rows belong to no tenant: system code, so the unscoped manager.
                row = Tool.dangerously_unscoped.select_for_update().filter(tenant__isnull=True, name=name).first()
                if row is None:
                    Tool.dangerously_unscoped.create(
                        tenant=None, name=name, type=entry.type, description=entry.description,
                        prompt_injection=entry.prompt_injection, config=dict(entry.default_config),
                    )
                    created += 1
                    continue
                row.type, row.description, row.prompt_injection = entry.type, entry.description, entry.prompt_injection
                row.config = {**entry.default_config, **(row.config or {})}
                row.save(update_fields=["type", "description", "prompt_injection", "config", "updated_at"])
                updated += 1
        self.stdout.write(f"Tools synced: {created} created, {updated} updated.")

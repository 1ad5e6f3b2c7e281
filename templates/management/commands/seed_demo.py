"""Seed the demo tenant "Pointe Coach" and its staff user (idempotent; prints the login once)."""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from tenants.models import Tenant, User
from tenants.services import staff_user_create, tenant_create
from templates import demo

DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = "Create the Pointe Coach demo tenant, its staff user and its Sales agent (first run only)."

    def handle(self, *args, **options):
        with transaction.atomic():
            tenant = Tenant.objects.filter(slug=demo.DEMO_SLUG).first()
            created = tenant is None
            if created:
                tenant = tenant_create(name=demo.DEMO_NAME, slug=demo.DEMO_SLUG)
            password = None
            if not User.objects.filter(username=DEMO_USERNAME).exists():
                _, password = staff_user_create(tenant=tenant, username=DEMO_USERNAME, email="demo@pointecoach.example")
            demo.seed_tenant_content(tenant.pk)
        call_command("sync_tools", stdout=self.stdout)  # global Tool rows, for the admin and API
        if password:
            self.stdout.write(self.style.SUCCESS(
                "\n  Demo tenant ready: Pointe Coach\n"
                f"  Admin login: http://127.0.0.1:8000/admin/  user: {DEMO_USERNAME}  password: {password}\n"
                "  (shown once; reset it with `manage.py changepassword demo`)\n"
            ))
        else:
            self.stdout.write("Demo tenant already seeded.")

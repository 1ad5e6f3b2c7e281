"""Tienda Nube's mandatory privacy webhooks, honoured against conversations and customers.

- customers/redact: the customer's conversations (and their messages) are deleted.
- customers/data_request: everything stored about the customer is written as one JSON file to
  the default storage under privacy/ for the shop to hand over; the path is logged, not the data.
  The shop gets it: mailed (a job, retried) to its smtp PRIVACY_TO (else HANDOFF_TO) when the
  tenant has SMTP credentials, and downloadable by its staff in the admin (/admin/privacy/).
- store/redact (48 h after uninstall): the store's Tienda Nube credentials are deleted. The
  tenant's conversations came through its messaging channels, not through Tienda Nube, and stay.

Customers are matched by phone: Tienda Nube sends it as typed by the shopper ("+54 9 11 ..."),
the channels store digits only (WhatsApp wa_id), so both sides are compared as digits, allowing
a missing country prefix on either side.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from tenants.scoping import tenant_scope

from messaging.models import ChatConversation, ChatMessage
from vault import credentials as vault
from vault.schemas import CATEGORY_SCHEMAS

logger = logging.getLogger(__name__)

MIN_SUFFIX_DIGITS = 8


def _digits(value) -> str:
    return re.sub(r"\D", "", str(value or ""))


def _same_phone(a: str, b: str) -> bool:
    if not a or not b:
        return False
    shorter, longer = sorted((a, b), key=len)
    return a == b or (len(shorter) >= MIN_SUFFIX_DIGITS and longer.endswith(shorter))


def customer_conversations(tenant_id: int, customer: dict):
    """The tenant's conversations whose contact is this customer (by phone)."""
    phone = _digits(customer.get("phone"))
    if not phone:
        return ChatConversation.objects.for_tenant(tenant_id).none()
    ids = [
        pk for pk, contact in ChatConversation.objects.for_tenant(tenant_id).values_list("id", "contact_external_id")
        if _same_phone(_digits(contact), phone)
    ]
    return ChatConversation.objects.for_tenant(tenant_id).filter(pk__in=ids)


def redact_customer(*, tenant_id: int, customer: dict) -> str:
    with transaction.atomic():
        conversations = customer_conversations(tenant_id, customer)
        count = conversations.count()
        ChatMessage.objects.for_tenant(tenant_id).filter(conversation__in=conversations).delete()
        conversations.delete()
    return f"deleted {count} conversation(s) of customer {customer.get('id')}"


def export_customer(*, tenant_id: int, customer: dict, request_id=None) -> str:
    """Export once per data request: Tienda Nube delivers again when our answer is late, and a
    redelivery neither writes a second file nor mails the shop twice."""
    request = _digits(request_id)
    request_name = f"{export_folder(tenant_id)}data-request-{request}.json" if request else None
    if request_name and default_storage.exists(request_name):
        return f"data request {request} already exported to {request_name}"
    conversations = list(customer_conversations(tenant_id, customer).order_by("created_at"))
    messages = ChatMessage.objects.for_tenant(tenant_id).filter(conversation__in=conversations).order_by("created_at")
    export = {
        "requested_at": timezone.now(),
        "customer": {"id": customer.get("id"), "email": customer.get("email"), "phone": customer.get("phone")},
        "conversations": [
            {
                "id": c.pk, "channel": c.channel_source, "contact": c.contact_external_id, "name": c.contact_name,
                "created_at": c.created_at,
                "messages": [
                    {"direction": m.direction, "role": m.role, "text": m.text, "attachments": m.attachments,
                     "created_at": m.created_at}
                    for m in messages if m.conversation_id == c.pk
                ],
            }
            for c in conversations
        ],
    }
    name = request_name or f"{export_folder(tenant_id)}data-request-{timezone.now():%Y%m%d%H%M%S}.json"
    path = default_storage.save(name, ContentFile(json.dumps(export, cls=DjangoJSONEncoder, indent=2).encode()))
    mailed = _queue_export_email(tenant_id, path.rsplit("/", 1)[-1])
    return (f"exported {len(conversations)} conversation(s) to {path}; "
            + ("e-mail to the shop queued" if mailed else "no SMTP credentials: staff download it in the admin"))


# --- Handing the export to the shop ----------------------------------------------------------

EXPORT_NAME = re.compile(r"^data-request-[\w-]+\.json$")


def export_folder(tenant_id: int) -> str:
    return f"privacy/tiendanube/tenant-{int(tenant_id)}/"


@dataclass
class Export:
    name: str
    size: int
    created_at: datetime | None


def list_exports(tenant_id: int) -> list[Export]:
    """The tenant's data-request exports, newest first (only its own folder is ever read)."""
    folder = export_folder(tenant_id)
    try:
        _, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return []
    exports = []
    for name in files:
        if EXPORT_NAME.match(name):
            try:
                created = default_storage.get_created_time(folder + name)
            except (NotImplementedError, OSError):
                created = None
            exports.append(Export(name=name, size=default_storage.size(folder + name), created_at=created))
    return sorted(exports, key=lambda e: (e.created_at is not None, e.created_at or 0, e.name), reverse=True)


def open_export(tenant_id: int, name: str):
    """The export file of this tenant called `name`; LookupError for any other name (another
    tenant's, a path, one that does not exist)."""
    if not EXPORT_NAME.match(name or "") or not default_storage.exists(export_folder(tenant_id) + name):
        raise LookupError(name)
    return default_storage.open(export_folder(tenant_id) + name, "rb")


def _queue_export_email(tenant_id: int, name: str) -> bool:
    from messaging.tasks import send_privacy_export
    from vault.credentials import check_credentials

    with tenant_scope(tenant_id):
        if not check_credentials(tenant_id, "smtp"):
            return False
    transaction.on_commit(lambda: send_privacy_export.defer(tenant_id=tenant_id, name=name))
    return True


def email_export(*, tenant_id: int, name: str) -> str:
    """Mail the export to the shop (job body): PRIVACY_TO, else HANDOFF_TO, of its smtp credentials."""
    from messaging import tenant_mail
    from vault.credentials import get_category

    with tenant_scope(tenant_id):
        smtp = get_category(tenant_id, "smtp")
    recipient = smtp.get("PRIVACY_TO") or smtp.get("HANDOFF_TO")
    if not recipient:
        logger.warning("Data request export %s of tenant %s not mailed: no smtp PRIVACY_TO or HANDOFF_TO address; "
                       "staff can download it in the admin", name, tenant_id)
        return "no PRIVACY_TO or HANDOFF_TO address"
    try:
        with open_export(tenant_id, name) as handle:
            content = handle.read()
    except LookupError:  # removed meanwhile (by hand, or a later redact): nothing to retry
        logger.warning("Data request export %s of tenant %s no longer exists; not mailed", name, tenant_id)
        return "export no longer exists"
    tenant_mail.send(
        tenant_id=tenant_id, smtp=smtp, to=recipient, subject="Tienda Nube: a customer asked for their data",
        body=("A customer asked your store, through Tienda Nube, for the personal data this platform keeps about "
              "them. Everything stored (their conversations and messages) is attached as JSON; send it to the "
              "customer as your privacy policy says. It can also be downloaded in the admin, under Privacy requests."),
        attachments=[(name, content, "application/json")],
    )
    logger.info("Data request export %s of tenant %s mailed to the shop", name, tenant_id)
    return "sent"


def redact_store(*, tenant_id: int) -> str:
    deleted = [name for name in CATEGORY_SCHEMAS["tiendanube"] if vault.delete_tenant_credential(tenant_id, "tiendanube", name)]
    return f"deleted Tienda Nube credentials {deleted or 'none'}"

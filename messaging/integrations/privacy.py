"""Tienda Nube's mandatory privacy webhooks, honoured against conversations and customers.

- customers/redact: the customer's conversations (and their messages) are deleted.
- customers/data_request: everything stored about the customer is written as one JSON file to
  the default storage under privacy/ for the shop to hand over; the path is logged, not the data.
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

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

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
    suffix = _digits(request_id) or timezone.now().strftime("%Y%m%d%H%M%S")
    name = f"privacy/tiendanube/tenant-{tenant_id}/data-request-{suffix}.json"
    path = default_storage.save(name, ContentFile(json.dumps(export, cls=DjangoJSONEncoder, indent=2).encode()))
    return f"exported {len(conversations)} conversation(s) to {path}"


def redact_store(*, tenant_id: int) -> str:
    deleted = [name for name in CATEGORY_SCHEMAS["tiendanube"] if vault.delete_tenant_credential(tenant_id, "tiendanube", name)]
    return f"deleted Tienda Nube credentials {deleted or 'none'}"

"""The three HTTP providers: Meta direct (WhatsApp Cloud, Messenger, Instagram), Chatwoot, YCloud."""

from __future__ import annotations

import json
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from messaging.providers.base import (
    DeliveryError, SendResult, graph_transient, post_json, register_provider, ycloud_transient,
)
from messaging.webhooks.whatsapp_content import is_bsuid
from vault.credentials import CredentialNotConfigured, get_optional_credential, get_tenant_credential_sync


def _credential(tenant_id: int, category: str, name: str) -> str:
    try:
        return get_tenant_credential_sync(tenant_id, category, name)
    except CredentialNotConfigured as exc:
        raise DeliveryError(exc.public_message, retryable=False) from None


def _id(value) -> str:
    """A provider's message id as text ("" when it sent none: null is not the id "None")."""
    return "" if value is None or isinstance(value, (dict, list)) else str(value)


def _headers(message, extra: dict) -> dict:
    # For a provider that deduplicates on it (none of these three documents doing so today; YCloud's
    # externalId is a reference, not a key): a resend after a timeout or a crash then is not
    # delivered twice. Without one, delivery is at least once (README, "The relay").
    return {"Idempotency-Key": str(message.idempotency_key), **extra}


def page_token_for(tenant_id: int, external_id: str) -> str:
    """The token of the page (or of the page behind the Instagram account) `external_id`, or "".

    Meta connect stores one token per page in PAGE_TOKENS (keyed by page id and by the page's
    Instagram business account id); PAGE_TOKEN is the single-page fallback."""
    mapping = get_optional_credential(tenant_id, "meta", "PAGE_TOKENS") if external_id else None
    if mapping:
        try:
            token = json.loads(mapping).get(external_id)
        except (ValueError, AttributeError):
            token = None
        if token:
            return token
    return get_optional_credential(tenant_id, "meta", "PAGE_TOKEN") or ""


def _page_token(tenant_id: int, conversation) -> str:
    external_id = conversation.binding.external_id if conversation.binding_id else ""
    return page_token_for(tenant_id, external_id) or _credential(tenant_id, "meta", "PAGE_TOKEN")


# Messenger and Instagram: a reply within 24 h of the customer's last message is a RESPONSE; a
# person (not the bot) may answer for 7 days with the HUMAN_AGENT tag (Meta's messaging policy;
# the app needs the human_agent permission, or Meta refuses it with its own error, shown to staff).
STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)


def _messaging_type(message, conversation) -> dict:
    last = conversation.last_inbound_at
    if message.role != "human" or last is None or timezone.now() - last <= STANDARD_WINDOW:
        return {"messaging_type": "RESPONSE"}
    if timezone.now() - last > HUMAN_AGENT_WINDOW:
        raise DeliveryError(
            f"The customer last wrote on {last:%Y-%m-%d %H:%M} UTC, more than 7 days ago: Meta allows no reply on "
            f"{conversation.get_channel_source_display()} until they write again.", retryable=False)
    return {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}


def _whatsapp_window_open(conversation) -> None:
    """WhatsApp takes free-form messages (the bot's and a person's alike) only within 24 h of the
    customer's last message; later, Meta accepts the call and fails the message afterwards
    (131047). Refused here, without a call, with the reason staff can act on."""
    last = conversation.last_inbound_at
    if last is not None and timezone.now() - last > STANDARD_WINDOW:
        raise DeliveryError(
            f"The customer last wrote on {last:%Y-%m-%d %H:%M} UTC, more than 24 hours ago: WhatsApp accepts only "
            "template messages until they write again.", retryable=False)


class MetaDirect:
    name = "meta_direct"
    spaced = True

    def send(self, *, message, conversation) -> SendResult:
        if conversation.channel_source == "whatsapp":
            return self._whatsapp(message, conversation)
        token = _page_token(message.tenant_id, conversation)
        body, status = post_json(
            f"{settings.META_GRAPH_BASE}/me/messages",
            json={
                "recipient": {"id": conversation.contact_external_id},
                **_messaging_type(message, conversation),
                "message": {"text": message.text},
            },
            headers=_headers(message, {"Authorization": f"Bearer {token}"}),
            provider=f"Meta {conversation.channel_source}", transient=graph_transient,
        )
        return SendResult(_id(body.get("message_id")), status)

    def _whatsapp(self, message, conversation) -> SendResult:
        _whatsapp_window_open(conversation)
        token = _credential(message.tenant_id, "whatsapp_cloud", "ACCESS_TOKEN")
        phone_number_id = (conversation.binding.external_id if conversation.binding_id else "") or _credential(
            message.tenant_id, "whatsapp_cloud", "PHONE_NUMBER_ID"
        )
        body, status = post_json(
            f"{settings.META_GRAPH_BASE}/{phone_number_id}/messages",
            json={
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                # A customer known only by their business-scoped user id is sent to as `recipient`.
                ("recipient" if is_bsuid(conversation.contact_external_id) else "to"): conversation.contact_external_id,
                "type": "text",
                "text": {"preview_url": False, "body": message.text},
            },
            headers=_headers(message, {"Authorization": f"Bearer {token}"}),
            provider="WhatsApp Cloud", transient=graph_transient,
        )
        ids = [m.get("id") for m in body.get("messages") or [] if isinstance(m, dict)]
        return SendResult(_id(ids[0]) if ids else "", status)


def chatwoot_api(tenant_id: int) -> tuple[str, str]:
    """The tenant's Chatwoot address and the token the platform speaks with (the agent bot's when
    set, else the API token)."""
    base = _credential(tenant_id, "chatwoot", "BASE_URL").rstrip("/")
    token = get_optional_credential(tenant_id, "chatwoot", "CHATWOOT_BOT_TOKEN") or _credential(
        tenant_id, "chatwoot", "CHATWOOT_API_TOKEN")
    return base, token


class Chatwoot:
    name = "chatwoot"
    spaced = True

    def send(self, *, message, conversation) -> SendResult:
        if not conversation.external_chatwoot_id or not conversation.external_account_id:
            raise DeliveryError(
                f"Conversation {conversation.pk} has no Chatwoot conversation/account id to reply to", retryable=False
            )
        base, token = chatwoot_api(message.tenant_id)
        body, status = post_json(
            f"{base}/api/v1/accounts/{conversation.external_account_id}"
            f"/conversations/{conversation.external_chatwoot_id}/messages",
            json={"content": message.text, "message_type": "outgoing", "private": False},
            headers=_headers(message, {"api_access_token": token}),
            provider="Chatwoot",
        )
        return SendResult(_id(body.get("id")), status)


def _ycloud_recipient(contact_id: str) -> dict:
    """Whom YCloud sends to: `to` with the phone number in E.164, or, for a customer known only by
    their business-scoped user id, `recipient` with the id as is and no `to` (YCloud's BSUID
    changelog: when both are given `to` wins, and `to` must be a phone number)."""
    if is_bsuid(contact_id):
        return {"recipient": contact_id}
    return {"to": "+" + contact_id.lstrip("+")}


class YCloud:
    name = "ycloud"
    spaced = True

    def send(self, *, message, conversation) -> SendResult:
        _whatsapp_window_open(conversation)
        api_key = _credential(message.tenant_id, "ycloud", "API_KEY")
        # From the number the customer wrote to (one YCloud account may serve several; the 24 h
        # window is per number), else the tenant's FROM_NUMBER.
        binding = conversation.binding if conversation.binding_id else None
        if binding is not None and binding.provider == "ycloud" and binding.external_id.lstrip("+").isdigit():
            sender = "+" + binding.external_id.lstrip("+")
        else:
            sender = _credential(message.tenant_id, "ycloud", "FROM_NUMBER")
        body, status = post_json(
            f"{settings.YCLOUD_API_BASE}/whatsapp/messages",
            json={
                "from": sender,
                **_ycloud_recipient(conversation.contact_external_id),
                "type": "text",
                "text": {"body": message.text},
                "externalId": str(message.idempotency_key),
            },
            headers=_headers(message, {"X-API-Key": api_key}),
            provider="YCloud", transient=ycloud_transient,
        )
        return SendResult(_id(body.get("id") or body.get("wamid")), status)


class Playground:
    """The staff playground: nothing leaves the platform; the live event is the delivery."""

    name = "playground"
    spaced = True

    def send(self, *, message, conversation) -> SendResult:
        return SendResult(f"playground:{message.pk}", None)


for provider in (MetaDirect(), Chatwoot(), YCloud(), Playground()):
    register_provider(provider)

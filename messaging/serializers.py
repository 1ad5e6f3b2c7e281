"""API shapes for channels, conversations and messages (also the payloads of live events)."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from messaging.models import ChannelBinding, ChatConversation, ChatMessage, DeliveryAttempt, Provider
from tenants.api_base import TenantPrimaryKeyRelatedField

WEBHOOK_ROUTES = {Provider.CHATWOOT: "webhook-chatwoot", Provider.YCLOUD: "webhook-ycloud"}


def webhook_url(binding: ChannelBinding) -> str:
    """Chatwoot and YCloud post to a per-tenant URL; Meta to the one app-level endpoint."""
    route = WEBHOOK_ROUTES.get(binding.provider)
    path = reverse(route, kwargs={"token": binding.webhook_token}) if route else reverse("webhook-meta")
    return settings.PUBLIC_BASE_URL + path


class ChannelBindingSerializer(serializers.ModelSerializer):
    webhook_url = serializers.SerializerMethodField()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from agents.models import Agent

        self.fields["agent"] = TenantPrimaryKeyRelatedField(model=Agent, allow_null=True, required=False)

    class Meta:
        model = ChannelBinding
        fields = ["id", "provider", "channel_source", "external_id", "agent", "is_active", "webhook_url", "created_at"]
        read_only_fields = ["id", "webhook_url", "created_at"]

    def get_webhook_url(self, binding) -> str:
        return webhook_url(binding)

    def validate_provider(self, value):
        if value == Provider.PLAYGROUND:
            raise serializers.ValidationError("The playground needs no channel binding.")
        return value

    def validate(self, attrs):
        from tenants.scoping import require_tenant_id

        claimed = {name: attrs.get(name, getattr(self.instance, name, None))
                   for name in ("provider", "channel_source", "external_id")}
        problem = binding_claim_problem(tenant_id=require_tenant_id(), instance=self.instance, **claimed)
        if problem:
            raise serializers.ValidationError({"external_id": problem})
        return attrs


def binding_claim_problem(*, tenant_id: int, instance, provider, channel_source, external_id,
                          prove_ownership: bool = True) -> str:
    """Why this tenant may not bind this account ("" when it may), for the API and the admin:
    - the account is bound already: anywhere for Meta and YCloud (their ids route deliveries), in
      this tenant for Chatwoot (account ids repeat across installations; token URLs route them);
    - a Meta account claimed by hand (new, or another account than before) must be the tenant's
      (messaging.integrations.meta.verify_ownership); platform admins are trusted (prove_ownership)."""
    if not (provider and external_id):
        return ""
    clash = ChannelBinding.dangerously_unscoped.filter(provider=provider, external_id=external_id)
    if provider == Provider.CHATWOOT:
        clash = clash.filter(tenant_id=tenant_id)
    if instance is not None and instance.pk:
        clash = clash.exclude(pk=instance.pk)
    if clash.exists():
        where = " in this tenant" if provider == Provider.CHATWOOT else ""
        return f"A {provider} channel with external id {external_id!r} is already bound{where}."
    unchanged = instance is not None and instance.pk and (provider, channel_source, external_id) == (
        instance.provider, instance.channel_source, instance.external_id)
    if provider == Provider.META_DIRECT and prove_ownership and not unchanged:
        from messaging.integrations.errors import ConnectError
        from messaging.integrations.meta import verify_ownership

        try:
            verify_ownership(tenant_id, channel_source=channel_source, external_id=external_id)
        except ConnectError as exc:
            return str(exc)
    return ""


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChatMessage
        fields = [
            "id", "conversation", "direction", "role", "text", "attachments", "provider", "provider_message_id",
            "status", "error", "attempts", "scheduled_at", "sent_at", "created_at", "sent_by", "turn_id",
        ]
        read_only_fields = fields


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "started_at", "duration_ms", "http_status", "outcome", "error"]
        read_only_fields = fields


class ConversationSerializer(serializers.ModelSerializer):
    class Meta:
        model = ChatConversation
        fields = [
            "id", "binding", "provider", "channel_source", "contact_external_id", "contact_user_id",
            "contact_name", "external_chatwoot_id", "external_account_id", "agent", "status", "bot_paused_until",
            "last_inbound_at", "last_message_at", "last_error", "created_at",
        ]
        read_only_fields = [f for f in fields if f not in ("status", "agent")]


class ReplyInput(serializers.Serializer):
    text = serializers.CharField(max_length=20000, trim_whitespace=True)


class BotInput(serializers.Serializer):
    paused = serializers.BooleanField()
    hours = serializers.FloatField(required=False, min_value=0.01, max_value=24 * 365)


class RelayInput(serializers.Serializer):
    to = serializers.CharField(max_length=160, required=False, allow_blank=True, default="")  # contact ids: 160
    text = serializers.CharField(max_length=20000)
    provider = serializers.ChoiceField(choices=[Provider.META_DIRECT, Provider.CHATWOOT, Provider.YCLOUD])
    channel_source = serializers.ChoiceField(choices=["whatsapp", "instagram", "facebook"])
    tenant_id = serializers.IntegerField()
    conversation_id = serializers.IntegerField(required=False, allow_null=True)

    def validate_to(self, value):
        if value and (not value.lstrip("+") or any(ch.isspace() or ord(ch) < 32 for ch in value)):
            raise serializers.ValidationError("'to' must be a phone number or a contact id, without spaces.")
        return value

    def validate(self, attrs):
        if not attrs.get("to") and not attrs.get("conversation_id"):
            raise serializers.ValidationError("Either 'to' or 'conversation_id' is required.")
        return attrs

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
        provider = attrs.get("provider", getattr(self.instance, "provider", None))
        external_id = attrs.get("external_id", getattr(self.instance, "external_id", None))
        clash = ChannelBinding.dangerously_unscoped.filter(provider=provider, external_id=external_id)
        if provider == Provider.CHATWOOT:  # account ids repeat across Chatwoot installations
            from tenants.scoping import require_tenant_id

            clash = clash.filter(tenant_id=require_tenant_id())
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(
                {"external_id": f"A {provider} channel with external id {external_id!r} is already bound."}
            )
        channel_source = attrs.get("channel_source", getattr(self.instance, "channel_source", None))
        claimed = (provider, channel_source, external_id)
        unchanged = self.instance is not None and claimed == (
            self.instance.provider, self.instance.channel_source, self.instance.external_id)
        if provider == Provider.META_DIRECT and not unchanged:
            proof_of_ownership(channel_source=channel_source, external_id=external_id)
        return attrs


def proof_of_ownership(*, channel_source: str, external_id: str) -> None:
    """A Meta account bound by hand must be the tenant's (messaging.integrations.meta.verify_ownership)."""
    from messaging.integrations.errors import ConnectError
    from messaging.integrations.meta import verify_ownership
    from tenants.scoping import require_tenant_id

    try:
        verify_ownership(require_tenant_id(), channel_source=channel_source, external_id=external_id)
    except ConnectError as exc:
        raise serializers.ValidationError({"external_id": str(exc)}) from None


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
            "id", "binding", "provider", "channel_source", "contact_external_id", "contact_name",
            "external_chatwoot_id", "external_account_id", "agent", "status", "bot_paused_until",
            "last_inbound_at", "last_message_at", "last_error", "created_at",
        ]
        read_only_fields = [f for f in fields if f not in ("status", "agent")]


class ReplyInput(serializers.Serializer):
    text = serializers.CharField(max_length=20000, trim_whitespace=True)


class BotInput(serializers.Serializer):
    paused = serializers.BooleanField()
    hours = serializers.FloatField(required=False, min_value=0.01, max_value=24 * 365)


class RelayInput(serializers.Serializer):
    to = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")  # contact ids: 120
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

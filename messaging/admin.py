"""Admin: channels, conversations (with their messages), a failed-messages view with retry, and
(platform admins only) the webhook inbox's stuck deliveries and the webhook counters."""

from __future__ import annotations

from django.contrib import admin, messages as flash

from messaging import inbox, services
from messaging.models import (
    ChannelBinding,
    ChatConversation,
    ChatMessage,
    DeliveryAttempt,
    InboundDelivery,
    MessageStatus,
    WebhookCounter,
)
from messaging.serializers import binding_claim_problem, webhook_url
from tenants.admin_base import (
    PlatformAdminOnly,
    TenantScopedAdmin,
    TenantScopedInline,
    is_platform_admin,
    request_tenant_id,
)


@admin.register(ChannelBinding)
class ChannelBindingAdmin(TenantScopedAdmin):
    list_display = ("provider", "channel_source", "external_id", "agent", "is_active", "created_at")
    list_filter = ("provider", "channel_source", "is_active")
    search_fields = ("external_id",)
    readonly_fields = ("webhook_url",)

    @admin.display(description="Webhook URL")
    def webhook_url(self, obj):
        return webhook_url(obj) if obj and obj.pk else "(saved bindings show their URL)"

    def get_form(self, request, obj=None, **kwargs):
        """The API's checks (messaging.serializers.binding_claim_problem) as a form error: the
        tenant is a field the form leaves out, so Django's own uniqueness check would not run."""
        form_class = super().get_form(request, obj, **kwargs)
        platform = is_platform_admin(request)

        class ChannelForm(form_class):
            def clean(self):
                data = super().clean()
                tenant_id = (self.instance.tenant_id or getattr(data.get("tenant"), "pk", None)
                             or request_tenant_id(request))
                problem = binding_claim_problem(
                    tenant_id=tenant_id, instance=self.instance, provider=data.get("provider"),
                    channel_source=data.get("channel_source"), external_id=data.get("external_id"),
                    prove_ownership=not platform)
                if problem:
                    self.add_error("external_id", problem)
                return data

        return ChannelForm


class MessageInline(TenantScopedInline):
    model = ChatMessage
    fields = ("created_at", "direction", "role", "text", "status", "error", "attempts")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-created_at",)
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ChatConversation)
class ChatConversationAdmin(TenantScopedAdmin):
    list_display = ("__str__", "provider", "channel_source", "status", "bot_paused_until", "last_message_at", "last_error")
    list_filter = ("status", "provider", "channel_source")
    search_fields = ("contact_name", "contact_external_id", "contact_user_id")
    readonly_fields = ("provider", "channel_source", "contact_external_id", "contact_user_id", "external_chatwoot_id",
                       "external_account_id", "last_inbound_at", "last_message_at", "buffer_due_at", "turn_claim",
                       "created_at")
    inlines = [MessageInline]


class AttemptInline(TenantScopedInline):
    model = DeliveryAttempt
    fields = ("number", "started_at", "duration_ms", "http_status", "outcome", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class FailedFilter(admin.SimpleListFilter):
    title = "delivery"
    parameter_name = "delivery"

    def lookups(self, request, model_admin):
        return [("failed", "Failed (needs attention)"), ("queued", "Waiting to send")]

    def queryset(self, request, queryset):
        if self.value() in ("failed", "queued"):
            return queryset.filter(status=self.value())
        return queryset


@admin.register(ChatMessage)
class ChatMessageAdmin(TenantScopedAdmin):
    list_display = ("id", "conversation", "direction", "role", "short_text", "status", "error", "attempts", "created_at")
    list_filter = (FailedFilter, "status", "direction", "role", "provider")
    search_fields = ("text", "provider_message_id", "error")
    readonly_fields = ("conversation", "direction", "role", "provider", "provider_message_id", "status", "error",
                       "attempts", "lane", "scheduled_at", "sent_at", "answered_at", "idempotency_key", "turn_id", "sent_by",
                       "created_at", "attachments")
    inlines = [AttemptInline]
    actions = ["retry_failed"]
    list_select_related = ("conversation",)

    @admin.display(description="text")
    def short_text(self, obj):
        return (obj.text[:80] + "…") if len(obj.text) > 80 else obj.text

    @admin.action(description="Retry the selected failed messages")
    def retry_failed(self, request, queryset):
        chosen = list(queryset.filter(status=MessageStatus.FAILED).order_by("pk"))
        for message in chosen:
            try:  # in order: a reply's held parts go again with its first one, and are skipped here then
                services.retry_message(tenant_id=message.tenant_id, message_id=message.pk)
            except services.MessagingError:
                continue
        retried = ChatMessage.dangerously_unscoped.filter(pk__in=[m.pk for m in chosen]).exclude(
            status=MessageStatus.FAILED).count()  # queued again (or already sent by a dispatcher)
        self.message_user(request, f"{retried} failed message(s) queued again.", flash.SUCCESS if retried else flash.WARNING)


class ReadOnlyPlatformAdmin(PlatformAdminOnly):
    """Written by webhooks and workers, never by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(InboundDelivery)
class InboundDeliveryAdmin(ReadOnlyPlatformAdmin):
    """Deliveries the webhooks stored that the worker has not processed: normally empty; a row
    that stays has an error (processing raised INBOX_MAX_ATTEMPTS times) or no worker is running."""

    list_display = ("id", "provider", "binding", "received_at", "attempts", "next_attempt_at", "last_error")
    list_filter = ("provider",)
    search_fields = ("last_error", "delivery_id")
    readonly_fields = ("provider", "binding", "delivery_id", "received_at", "attempts", "next_attempt_at",
                       "last_error", "body")
    actions = ["process_again"]

    @admin.action(description="Process the selected deliveries again")
    def process_again(self, request, queryset):
        count = inbox.process_again(queryset.values_list("pk", flat=True))
        self.message_user(request, f"{count} deliver{'y' if count == 1 else 'ies'} due again; a worker processes "
                                   "them within a second.", flash.SUCCESS if count else flash.WARNING)


@admin.register(WebhookCounter)
class WebhookCounterAdmin(ReadOnlyPlatformAdmin):
    list_display = ("name", "count", "last_seen_at")
    ordering = ("name",)

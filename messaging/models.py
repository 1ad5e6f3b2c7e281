"""Channels, conversations, messages, delivery attempts and per-recipient delivery lanes."""

from __future__ import annotations

import secrets
import uuid

from django.db import models
from django.db.models import Q

from tenants.models import TenantScopedModel


class Provider(models.TextChoices):
    META_DIRECT = "meta_direct", "Meta (direct)"
    CHATWOOT = "chatwoot", "Chatwoot"
    YCLOUD = "ycloud", "YCloud"
    # The staff playground: "delivery" is a live event to the staff's websocket.
    PLAYGROUND = "playground", "Playground"


class ChannelSource(models.TextChoices):
    WHATSAPP = "whatsapp", "WhatsApp"
    INSTAGRAM = "instagram", "Instagram"
    FACEBOOK = "facebook", "Facebook Messenger"
    PLAYGROUND = "playground", "Playground"


def new_webhook_token() -> str:
    return secrets.token_urlsafe(24)


class ChannelBinding(TenantScopedModel):
    """One provider account (phone number, page, Instagram account, Chatwoot account) → an agent."""

    provider = models.CharField(max_length=20, choices=Provider.choices)
    channel_source = models.CharField(max_length=20, choices=ChannelSource.choices)
    external_id = models.CharField(
        max_length=120, help_text="phone_number_id, page id, Instagram account id, Chatwoot account id or YCloud number"
    )
    agent = models.ForeignKey(
        "agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="channel_bindings"
    )
    # A routing key in per-tenant webhook URLs, not a secret (signatures are the authentication).
    webhook_token = models.CharField(max_length=64, unique=True, default=new_webhook_token, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # Meta ids and phone numbers are global: one tenant per account (they route deliveries).
            models.UniqueConstraint(fields=["provider", "external_id"], condition=~Q(provider="chatwoot"),
                                    name="channel_binding_provider_external_unique"),
            # Chatwoot account ids are per installation: every self-hosted Chatwoot starts at account
            # 1, so two shops with their own Chatwoot share ids. Its deliveries route by the
            # binding's webhook token, so the id only has to be unique within a tenant.
            models.UniqueConstraint(fields=["tenant", "provider", "external_id"], condition=Q(provider="chatwoot"),
                                    name="channel_binding_chatwoot_account_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} {self.channel_source} {self.external_id}"


class ConversationStatus(models.TextChoices):
    BOT = "bot", "Bot"
    HUMAN = "human", "Human"
    CLOSED = "closed", "Closed"


class ChatConversation(TenantScopedModel):
    binding = models.ForeignKey(
        ChannelBinding, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    provider = models.CharField(max_length=20, choices=Provider.choices)
    channel_source = models.CharField(max_length=20, choices=ChannelSource.choices)
    contact_external_id = models.CharField(
        max_length=160, help_text="phone number, WhatsApp business-scoped user id (BSUID), PSID or Instagram-scoped id")
    # A WhatsApp contact known by phone number also has a business-scoped user id (BSUID); Meta may
    # later withhold the number (a username) and send only the BSUID: it finds this conversation.
    contact_user_id = models.CharField(max_length=160, blank=True, default="")
    contact_name = models.CharField(max_length=200, blank=True)
    # Chatwoot replies must go back to the same Chatwoot conversation of the same account.
    external_chatwoot_id = models.CharField(max_length=40, blank=True)
    external_account_id = models.CharField(max_length=40, blank=True)
    # Set only to answer this conversation with another agent than its channel's (staff choose it in
    # the admin or the API; the playground sets its own); empty follows the channel's agent.
    agent = models.ForeignKey("agents.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                              help_text="Leave empty to follow the channel's agent.")
    status = models.CharField(max_length=10, choices=ConversationStatus.choices, default=ConversationStatus.BOT)
    bot_paused_until = models.DateTimeField(null=True, blank=True)
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The inbound buffer: the turn starts once this moment has passed (16 s after the last message).
    buffer_due_at = models.DateTimeField(null=True, blank=True)
    # Why the bot did not answer last time (paused, window closed, no key...), shown to staff.
    last_error = models.CharField(max_length=500, blank=True)
    # Ids of the inbound messages an agent turn has taken and not yet answered; non-empty after
    # a crash mid-turn, so the next buffer job answers them instead of dropping them.
    turn_claim = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-last_message_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "provider", "channel_source", "contact_external_id"],
                name="conversation_contact_unique",
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "status", "-last_message_at"], name="conversation_inbox_idx"),
            # The buffer's sweep finds interrupted turns without reading every conversation.
            models.Index(fields=["updated_at"], condition=~Q(turn_claim=[]), name="conversation_turn_claim_idx"),
            models.Index(fields=["tenant", "provider", "channel_source", "contact_user_id"],
                         condition=~Q(contact_user_id=""), name="conversation_user_id_idx"),
            # A Chatwoot delivery finds the conversation it belongs to; staff resolving one closes it.
            models.Index(fields=["tenant", "external_account_id", "external_chatwoot_id"],
                         condition=Q(provider="chatwoot"), name="conversation_chatwoot_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_name or self.contact_external_id} ({self.channel_source})"


class Direction(models.TextChoices):
    IN = "in", "Inbound"
    OUT = "out", "Outbound"


class Role(models.TextChoices):
    CUSTOMER = "customer", "Customer"
    AGENT = "agent", "Agent"
    HUMAN = "human", "Human"
    SYSTEM = "system", "System"


class MessageStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    QUEUED = "queued", "Queued"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    FAILED = "failed", "Failed"


class ChatMessage(TenantScopedModel):
    id = models.BigAutoField(primary_key=True)
    # Indexed by message_conversation_idx (conversation, created_at): a second index on the column
    # alone would cost every inbound message one more index write and serve no query.
    conversation = models.ForeignKey(ChatConversation, on_delete=models.CASCADE, related_name="messages",
                                     db_index=False)
    direction = models.CharField(max_length=3, choices=Direction.choices)
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField(blank=True)
    attachments = models.JSONField(default=list, blank=True)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    provider_message_id = models.CharField(max_length=200, null=True, blank=True)
    status = models.CharField(max_length=10, choices=MessageStatus.choices)
    error = models.TextField(blank=True)
    # Sent to providers that honour it, so a crash between "sent" and "recorded" does not send twice.
    idempotency_key = models.UUIDField(default=uuid.uuid4, editable=False)
    # Inbound: set when an agent turn has taken the message (the buffer never answers it twice).
    answered_at = models.DateTimeField(null=True, blank=True)
    # Outbound: the recipient lane and the slot claimed on it, and when it left.
    lane = models.ForeignKey("DeliveryLane", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                             db_index=False)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    turn_id = models.CharField(max_length=64, blank=True)
    # Set on staff replies only: indexed where set (message_sent_by_idx, for a user's deletion), so
    # the customer and agent messages, nearly all of them, write no entry for it.
    sent_by = models.ForeignKey(
        "tenants.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "provider", "provider_message_id"],
                condition=Q(provider_message_id__isnull=False),
                name="message_provider_id_unique",
            )
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_idx"),
            models.Index(
                fields=["conversation"], condition=Q(direction="in", answered_at__isnull=True), name="message_unanswered_idx"
            ),
            models.Index(fields=["tenant", "status"], condition=Q(status="failed"), name="message_failed_idx"),
            models.Index(fields=["sent_by"], condition=Q(sent_by__isnull=False), name="message_sent_by_idx"),
            # The relay's next message of a lane (and the sweeper's stranded ones).
            models.Index(fields=["lane", "scheduled_at", "id"], condition=Q(status="queued"),
                         name="message_lane_queue_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.role}: {self.text[:40]}"


class DeliveryAttempt(TenantScopedModel):
    """One try at handing an outbound message to its provider (Saleor-style delivery log)."""

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(ChatMessage, on_delete=models.CASCADE, related_name="delivery_attempts")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=20, blank=True, help_text="sent | retry | failed | (blank while running)")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["message_id", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of message {self.message_id}: {self.outcome or 'running'}"


class DeliveryLane(TenantScopedModel):
    """Per recipient: the next moment a message may leave, claimed atomically by the relay."""

    provider = models.CharField(max_length=20, choices=Provider.choices)
    recipient = models.CharField(max_length=160)
    next_free_at = models.DateTimeField()
    # When the last send on this lane finished (the next one leaves at least the spacing after it).
    last_sent_at = models.DateTimeField(null=True, blank=True)
    # When the lane's next queued message may leave; empty when nothing waits. A relay dispatcher
    # claims due lanes (claimed_by: its id, held as a PostgreSQL advisory lock while it lives),
    # sends each one's next message and sets the lane's next due time or empties it.
    due_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.BigIntegerField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "provider", "recipient"], name="delivery_lane_unique")
        ]
        indexes = [
            # What the dispatchers claim, earliest first; and what they hold (for the orphan sweep).
            models.Index(fields=["due_at"], condition=Q(due_at__isnull=False, claimed_by__isnull=True),
                         name="lane_due_idx"),
            models.Index(fields=["claimed_by"], condition=Q(claimed_by__isnull=False), name="lane_claimed_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.recipient}"


class WebhookEvent(TenantScopedModel):
    """Provider event/delivery ids already processed (Chatwoot X-Chatwoot-Delivery, YCloud event id)."""

    id = models.BigAutoField(primary_key=True)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    event_id = models.CharField(max_length=200)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "provider", "event_id"], name="webhook_event_unique")
        ]


class WebhookCounter(models.Model):
    """Platform-wide counters of webhook deliveries that stored nothing (unknown binding, odd shape)."""

    name = models.CharField(max_length=80, unique=True)
    count = models.BigIntegerField(default=0)
    last_seen_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.count}"


class InboundDelivery(models.Model):
    """A webhook delivery as received: signature checked, not yet parsed, routed or stored.

    The webhook persists this one row and answers 200; the worker's inbox drainer
    (messaging.inbox) parses, routes and stores it, then deletes it. Platform-level, not tenant-
    scoped: a Meta delivery's tenant is only known once its account id is routed. A delivery
    whose processing keeps failing stays here with its error (admin: process again).
    """

    id = models.BigAutoField(primary_key=True)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    # Token webhooks (Chatwoot, YCloud) know their binding when they check the signature.
    binding = models.ForeignKey(ChannelBinding, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    body = models.TextField(help_text="The raw JSON body, exactly as the provider sent it.")
    delivery_id = models.CharField(max_length=200, blank=True, help_text="X-Chatwoot-Delivery, when sent.")
    received_at = models.DateTimeField()
    # NULL once processing gave up (INBOX_MAX_ATTEMPTS): kept for the admin, never picked up again.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "inbound deliveries"
        indexes = [models.Index(fields=["next_attempt_at"], name="inbound_delivery_due")]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} delivery {self.pk}"

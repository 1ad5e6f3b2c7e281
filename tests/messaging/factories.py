from django.utils import timezone

from messaging.models import ChannelBinding, ChatConversation, ChatMessage, DeliveryLane

_counter = iter(range(1, 10**9))


def binding(tenant, **kwargs):
    fields = dict(provider="meta_direct", channel_source="whatsapp", external_id=f"pn-{tenant.slug}-{next(_counter)}")
    fields.update(kwargs)
    return ChannelBinding.dangerously_unscoped.create(tenant=tenant, **fields)


def conversation(tenant, **kwargs):
    fields = dict(provider="meta_direct", channel_source="whatsapp", contact_external_id=f"549{next(_counter):08d}")
    fields.update(kwargs)
    return ChatConversation.dangerously_unscoped.create(tenant=tenant, **fields)


def message(tenant, **kwargs):
    conv = kwargs.pop("conversation", None) or conversation(tenant)
    fields = dict(direction="out", role="agent", text="hello", provider=conv.provider, status="failed", error="boom")
    fields.update(kwargs)
    return ChatMessage.dangerously_unscoped.create(tenant=tenant, conversation=conv, **fields)


def lane(tenant, **kwargs):
    fields = dict(provider="meta_direct", recipient=f"549{next(_counter):08d}", next_free_at=timezone.now())
    fields.update(kwargs)
    return DeliveryLane.dangerously_unscoped.create(tenant=tenant, **fields)


ISOLATION_FACTORIES = {ChannelBinding: binding, ChatConversation: conversation, ChatMessage: message,
                       DeliveryLane: lane}

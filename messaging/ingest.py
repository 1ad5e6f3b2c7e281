"""Storing what webhooks bring (called by the webhook inbox's drainer, messaging.inbox):
inbound messages, status updates, human replies from inboxes.

Customer messages are written set-wise (record_inbound_many: the conversation rows are locked
first, so a buffer job decides after us; each message is inserted once, by its unique provider
id; a buffer job is made to wait). The rest runs in the binding's tenant scope, one transaction
each. Live events go out on commit.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from messaging import buffer, events
from messaging.models import (
    ChannelBinding,
    ChatConversation,
    ChatMessage,
    ConversationStatus,
    Direction,
    MessageStatus,
    Role,
    WebhookEvent,
)
from messaging.upserts import StaleBinding, insert_message_once, record_inbound_batch, upsert_conversation_row
from messaging.webhooks.normalized import ConversationResolved, HumanReply, InboundMessage, ReadUpTo, StatusUpdate
from tenants.scoping import tenant_scope

logger = logging.getLogger(__name__)

# Where a status may move from (a late "sent" never undoes "read"; "failed" is final).
STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "read": 3}


def insert_once(model, **fields):
    """Insert unless a row with the same unique key exists; None for a duplicate."""
    try:
        with transaction.atomic():
            return model.objects.create(**fields)
    except IntegrityError:
        return None


def seen_event(*, tenant_id: int, provider: str, event_id: str) -> bool:
    """Record a provider delivery id; True when it was already processed (a replay)."""
    if not event_id:
        return False
    with tenant_scope(tenant_id):
        if WebhookEvent.objects.filter(provider=provider, event_id=event_id).exists():
            return True
        return insert_once(WebhookEvent, tenant_id=tenant_id, provider=provider, event_id=event_id[:200]) is None


def _conversation_row(*, binding: ChannelBinding, channel_source: str, contact_id: str, contact_name: str = "",
                      chatwoot_id: str = "", account_id: str = "", inbound_at=None,
                      buffer_due_at=None, contact_user_id: str = "") -> ChatConversation:
    # No agent of its own: the conversation follows its channel's agent (ChatConversation.agent).
    return ChatConversation(
        tenant_id=binding.tenant_id, binding_id=binding.pk, provider=binding.provider,
        channel_source=channel_source, contact_external_id=contact_id, contact_name=contact_name,
        contact_user_id=contact_user_id,
        external_chatwoot_id=chatwoot_id, external_account_id=account_id, last_inbound_at=inbound_at,
        last_message_at=inbound_at, buffer_due_at=buffer_due_at,
    )


def upsert_conversation(*, binding: ChannelBinding, channel_source: str, contact_id: str, contact_name: str = "",
                        chatwoot_id: str = "", account_id: str = "", inbound_at=None,
                        buffer_due_at=None, contact_user_id: str = "") -> ChatConversation:
    """The contact's conversation on this provider and channel (one statement), locked for this
    transaction. `inbound_at` / `buffer_due_at` record an inbound message at the same time."""
    return upsert_conversation_row(_conversation_row(
        binding=binding, channel_source=channel_source, contact_id=contact_id, contact_name=contact_name,
        chatwoot_id=chatwoot_id, account_id=account_id, inbound_at=inbound_at, buffer_due_at=buffer_due_at,
        contact_user_id=contact_user_id,
    ))


def record_inbound(*, binding: ChannelBinding, event: InboundMessage, now=None, buffer_seconds=None) -> bool:
    """Store one inbound message and arm the buffer for it; False for a duplicate delivery.
    StaleBinding if the binding changed since the caller looked it up (nothing written)."""
    stored, stale = record_inbound_many([(binding, event, now or timezone.now())], buffer_seconds=buffer_seconds)
    if stale:
        raise StaleBinding(f"binding {binding.pk} changed")
    return bool(stored)


def record_inbound_many(items: list[tuple[ChannelBinding, InboundMessage, object]], *, buffer_seconds=None):
    """Store many inbound messages (binding, event, received at) in one statement per round
    (messaging.upserts.record_inbound_batch), what record_inbound does for one. A conversation
    reached through two bindings in one batch takes a second round.

    Returns (messages stored, the items whose binding no longer vouches: route them again)."""
    from messaging.tasks import answer_conversation

    stored, stale, pending = 0, [], _to_kept_conversations(items)
    while pending:
        rows: dict[tuple, list] = {}  # conversation key -> [conversation, binding, messages, items]
        later = []
        for item in pending:
            binding, event, now = item
            key = (binding.tenant_id, binding.provider, event.channel_source, event.contact_id)
            row = rows.get(key)
            if row is not None and row[1].pk != binding.pk:
                later.append(item)
                continue
            # A replayed old delivery must not reopen the 24 h window: the provider's time counts.
            inbound_at = min(event.sent_at, now) if event.sent_at else now
            due = buffer.due_time(now, buffer_seconds) if event.triggers_turn else None
            if row is None:
                conversation = _conversation_row(binding=binding, channel_source=event.channel_source,
                                                 contact_id=event.contact_id, inbound_at=inbound_at,
                                                 contact_user_id=event.contact_user_id)
                row = rows[key] = [conversation, binding, [], []]
            conversation = row[0]
            conversation.contact_name = event.contact_name or conversation.contact_name
            conversation.contact_user_id = event.contact_user_id or conversation.contact_user_id
            conversation.external_chatwoot_id = event.external_chatwoot_id or conversation.external_chatwoot_id
            conversation.external_account_id = event.external_account_id or conversation.external_account_id
            conversation.last_inbound_at = conversation.last_message_at = max(inbound_at, conversation.last_inbound_at)
            if due is not None:
                conversation.buffer_due_at = max(due, conversation.buffer_due_at or due)
            row[2].append(_inbound_row(conversation, binding.provider, event, now))
            row[3].append(item)
        batch = list(rows.values())
        vouched, inserted, closed_asked = record_inbound_batch(
            [(conversation, binding, messages) for conversation, binding, messages, _ in batch],
            job_queue=answer_conversation.queue, job_task=answer_conversation.name,
            lock_prefix=buffer.BUFFER_LOCK_PREFIX,
            notify_sql=events.inbound_notify_sql("msg.tenant_id", "msg.conversation_id", "msg.id"),
        )
        stored += inserted
        reopen_closed(closed_asked)
        stale += [item for index, row in enumerate(batch) if index not in vouched for item in row[3]]
        pending = later
    return stored, stale


def _to_kept_conversations(items: list) -> list:
    """(binding, event, at) items with each event's contact id set to the conversation we already
    keep for that person (WhatsApp ids, Chatwoot ids); run inside the caller's transaction."""
    return _known_in_chatwoot(_known_by_phone(items))


def _known_by_phone(items: list) -> list:
    """One WhatsApp customer, one conversation, whichever of their ids a message carries.

    A message naming the customer only by their business-scoped user id (a username hides the
    number) goes to the conversation kept under the number that has that id beside it. A message
    with both ids goes to the conversation kept under the number; when there is none but one kept
    under the id alone (the customer first wrote with the number hidden), that conversation is
    kept under the number from now on (within the caller's transaction): replies go to the number,
    as Meta recommends, and erasing the customer by their number finds it. History, pause and
    window carry on. One indexed query per batch with such ids, one UPDATE per conversation re-keyed."""
    with_id = [(binding, event) for binding, event, _ in items if event.contact_user_id]
    if not with_id:
        return items
    groups: dict[tuple, tuple[set, set]] = {}
    for binding, event in with_id:
        user_ids, phones = groups.setdefault((binding.tenant_id, binding.provider, event.channel_source), (set(), set()))
        user_ids.add(event.contact_user_id)
        if event.contact_id != event.contact_user_id:
            phones.add(event.contact_id)
    table = ChatConversation._meta.db_table
    where, params = [], []
    for (tenant_id, provider, channel_source), (user_ids, phones) in groups.items():
        where.append("(tenant_id = %s AND provider = %s AND channel_source = %s "
                     "AND (contact_user_id = ANY(%s) OR contact_external_id = ANY(%s)))")
        params += [tenant_id, provider, channel_source, sorted(user_ids), sorted(phones)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT tenant_id, provider, channel_source, contact_user_id, contact_external_id "
                       f"FROM {table} WHERE {' OR '.join(where)}", params)
        rows = cursor.fetchall()
    existing = {(tenant_id, provider, channel_source, contact_id)
                for tenant_id, provider, channel_source, _, contact_id in rows}
    by_user_id: dict[tuple, str] = {}  # -> the key of the customer's conversation, the number's first
    for tenant_id, provider, channel_source, user_id, contact_id in rows:
        key = (tenant_id, provider, channel_source, user_id)
        if user_id and (key not in by_user_id or by_user_id[key] == user_id):
            by_user_id[key] = contact_id
    rekeys = []
    for binding, event in with_id:
        user_id, phone = event.contact_user_id, event.contact_id
        if phone == user_id:
            continue
        group = (binding.tenant_id, binding.provider, event.channel_source)
        key = (*group, user_id)
        if (*group, phone) not in existing and by_user_id.get(key) == user_id:
            rekeys.append((*group, user_id, phone))  # first seen by the id alone: kept under the number now
            existing.add((*group, phone))
        if by_user_id.get(key) in (None, user_id) or (*group, phone) in existing:
            by_user_id[key] = phone  # (also within this batch: the pair first, then the id alone)
    if rekeys:
        with connection.cursor() as cursor:
            for tenant_id, provider, channel_source, user_id, phone in rekeys:
                cursor.execute(
                    f"UPDATE {table} SET contact_external_id = %s, updated_at = now() "
                    "WHERE tenant_id = %s AND provider = %s AND channel_source = %s AND contact_external_id = %s",
                    [phone, tenant_id, provider, channel_source, user_id])
        logger.info("%d WhatsApp conversation(s) first kept under a BSUID now kept under the number", len(rekeys))
    routed = []
    for binding, event, at in items:
        user_id = event.contact_user_id
        if user_id and event.contact_id == user_id:
            target = by_user_id.get((binding.tenant_id, binding.provider, event.channel_source, user_id))
            if target and target != user_id:
                event = dataclasses.replace(event, contact_id=target)
        routed.append((binding, event, at))
    return routed


def _known_in_chatwoot(items: list) -> list:
    """A message in a Chatwoot conversation we already keep under another of the contact's ids (a
    phone number or identifier added later, a key kept from before source ids were used) goes to
    that conversation. Both must hold: the same Chatwoot conversation and one of this contact's
    ids, so a Chatwoot install replaced by another (whose ids start over) never joins a stranger's
    conversation. One indexed query, only for Chatwoot deliveries that name other ids."""
    asked = [(binding, event) for binding, event, _ in items
             if binding.provider == "chatwoot" and event.external_chatwoot_id and event.external_account_id
             and event.contact_aliases]
    if not asked:
        return items
    wanted = Q()
    for binding, event in asked:
        wanted |= Q(tenant_id=binding.tenant_id, external_account_id=event.external_account_id,
                    external_chatwoot_id=event.external_chatwoot_id)
    kept: dict[tuple, list[tuple[str, str]]] = {}
    for row in ChatConversation.dangerously_unscoped.filter(wanted, provider="chatwoot").order_by(
            F("last_message_at").desc(nulls_last=True), "-pk").values(
            "tenant_id", "external_account_id", "external_chatwoot_id", "channel_source", "contact_external_id"):
        kept.setdefault((row["tenant_id"], row["external_account_id"], row["external_chatwoot_id"]), []).append(
            (row["channel_source"], row["contact_external_id"]))
    routed = []
    for binding, event, at in items:
        ours = kept.get((binding.tenant_id, event.external_account_id, event.external_chatwoot_id)) or []
        if ours and (event.channel_source, event.contact_id) not in ours:
            aliases = set(event.contact_aliases)
            # The most recently active of them, if an old split left two.
            for channel_source, contact_id in ours:
                if contact_id in aliases:
                    event = dataclasses.replace(event, channel_source=channel_source, contact_id=contact_id)
                    break
        routed.append((binding, event, at))
    return routed


def reopen_closed(conversation_ids: list[int]) -> None:
    """A customer who writes to a closed conversation asks something new: it opens again, to the
    bot. The batch's write names them: closed conversations whose new message was really stored
    (a replayed old one reopens nothing). No query at all otherwise."""
    if not conversation_ids:
        return
    ChatConversation.dangerously_unscoped.filter(pk__in=conversation_ids, status=ConversationStatus.CLOSED).update(
        status=ConversationStatus.BOT, updated_at=timezone.now())
    for conversation in ChatConversation.dangerously_unscoped.filter(pk__in=conversation_ids):
        events.conversation_updated(conversation)


def _inbound_row(conversation, provider, event: InboundMessage, now) -> ChatMessage:
    customer = event.triggers_turn
    return ChatMessage(
        tenant_id=conversation.tenant_id, conversation_id=conversation.pk, direction=Direction.IN,
        role=Role.CUSTOMER if customer else Role.SYSTEM, text=event.text, attachments=event.attachments,
        provider=provider, provider_message_id=event.provider_message_id[:200], status=MessageStatus.RECEIVED,
        answered_at=None if customer else now,
    )


def store_inbound(*, conversation: ChatConversation, provider: str, event: InboundMessage, now,
                  buffer_seconds=None):
    """Insert a message into a conversation locked by the caller and arm the buffer."""
    message = insert_message_once(_inbound_row(conversation, provider, event, now))
    if message is None:
        return None
    conversation.last_inbound_at = conversation.last_message_at = now
    fields = ["last_inbound_at", "last_message_at", "updated_at"]
    if event.triggers_turn:
        conversation.buffer_due_at = buffer.due_time(now, buffer_seconds)
        fields.append("buffer_due_at")
        if conversation.status == ConversationStatus.CLOSED:  # as reopen_closed does for webhooks
            conversation.status = ConversationStatus.BOT
            fields.append("status")
        buffer.ensure_buffer_job(conversation, conversation.buffer_due_at)
    conversation.save(update_fields=fields)
    events.message_created(message)
    events.conversation_updated(conversation)
    return message


def _matching_outbound(tenant_id: int, provider: str, event: StatusUpdate):
    match = Q(provider_message_id=event.provider_message_id)
    if event.idempotency_key:
        try:  # ours are UUIDs; YCloud reports every message of the account, other tools' ids too
            match |= Q(idempotency_key=uuid.UUID(str(event.idempotency_key)))
        except ValueError:
            pass
    return ChatMessage.objects.for_tenant(tenant_id).filter(match, provider=provider, direction=Direction.OUT)


def record_status(*, tenant_id: int, provider: str, event: StatusUpdate) -> int:
    """Move outbound messages forward (sent → delivered → read, or failed). Returns rows changed."""
    changed = 0
    with tenant_scope(tenant_id), transaction.atomic():
        for message in _matching_outbound(tenant_id, provider, event).select_for_update():
            if message.status == MessageStatus.FAILED:
                continue
            if event.status != MessageStatus.FAILED and STATUS_RANK.get(event.status, 0) <= STATUS_RANK.get(message.status, 0):
                continue
            message.status = event.status
            fields = ["status"]
            if event.error:
                message.error = event.error[:2000]
                fields.append("error")
            message.save(update_fields=fields)
            events.message_status(message)
            changed += 1
    return changed


def record_read(*, binding: ChannelBinding, event: ReadUpTo) -> int:
    """Messages sent to the contact up to the watermark move on to read (or delivered); never back."""
    before = [MessageStatus.SENT] if event.status == MessageStatus.DELIVERED else [MessageStatus.SENT,
                                                                                    MessageStatus.DELIVERED]
    with tenant_scope(binding.tenant_id), transaction.atomic():
        messages = ChatMessage.objects.filter(
            conversation__provider=binding.provider, conversation__channel_source=event.channel_source,
            conversation__contact_external_id=event.contact_id, direction=Direction.OUT,
            status__in=before, sent_at__lte=event.watermark,
        )
        rows = list(messages.select_for_update())
        for message in rows:
            message.status = event.status
            message.save(update_fields=["status"])
            events.message_status(message)
    return len(rows)


def _is_our_own(conversation: ChatConversation, event: HumanReply) -> bool:
    """Chatwoot echoes what we posted as an outgoing message; recognise it by id or recent text."""
    recent = ChatMessage.objects.filter(
        conversation=conversation, direction=Direction.OUT, role__in=[Role.AGENT, Role.HUMAN, Role.SYSTEM],
    )
    if recent.filter(provider_message_id=event.provider_message_id).exists():
        return True
    # The echo can arrive before the relay has recorded Chatwoot's id: then match the text of a
    # message without one, still in flight (however old: a retried message leaves late) or sent
    # in the last ten minutes. A person writing words the bot sent earlier is a person.
    in_flight = Q(status=MessageStatus.QUEUED)
    just_sent = Q(sent_at__gte=timezone.now() - timedelta(minutes=10), provider_message_id__isnull=True)
    return recent.filter(in_flight | just_sent, text=event.text).exists()


def record_human_reply(*, binding: ChannelBinding, event: HumanReply, now=None):
    """A human answered in the provider's own inbox: keep the message and pause the bot."""
    now = now or timezone.now()
    with tenant_scope(binding.tenant_id), transaction.atomic():
        [(_, event, _)] = _to_kept_conversations([(binding, event, now)])  # a re-key commits with the reply
        conversation = upsert_conversation(
            binding=binding, channel_source=event.channel_source, contact_id=event.contact_id,
            contact_name=event.contact_name, chatwoot_id=event.external_chatwoot_id,
            account_id=event.external_account_id, contact_user_id=event.contact_user_id,
        )
        if _is_our_own(conversation, event):
            return None
        message = insert_once(
            ChatMessage, tenant_id=binding.tenant_id, conversation=conversation, direction=Direction.OUT,
            role=Role.HUMAN, text=event.text, provider=binding.provider,
            provider_message_id=event.provider_message_id, status=MessageStatus.SENT, sent_at=now,
        )
        if message is None:
            return None
        # A longer pause someone set (a week, say) is not shortened by a reply.
        conversation.bot_paused_until = max(now + timedelta(hours=settings.HUMAN_TAKEOVER_HOURS),
                                            conversation.bot_paused_until or now)
        conversation.last_message_at = now
        conversation.save(update_fields=["bot_paused_until", "last_message_at", "updated_at"])
        logger.info("Conversation %s: human reply in %s, bot paused until %s",
                    conversation.pk, binding.provider, conversation.bot_paused_until)
        events.message_created(message)
        events.conversation_updated(conversation)
    return message


def record_resolved(*, binding: ChannelBinding, event: ConversationResolved) -> int:
    """Staff resolved the conversation in Chatwoot: ours closes and any pause ends (a customer who
    writes again opens it to the bot, as Chatwoot reopens its own). 0 when we never saw it."""
    with tenant_scope(binding.tenant_id), transaction.atomic():
        # The most recently active, should two of ours share the id (another install's ids reused).
        conversation = ChatConversation.objects.select_for_update().filter(
            provider=binding.provider, external_account_id=binding.external_id,
            external_chatwoot_id=event.external_chatwoot_id).order_by(
            F("last_message_at").desc(nulls_last=True), "-pk").first()
        if conversation is None:
            return 0
        conversation.status = ConversationStatus.CLOSED
        conversation.bot_paused_until = None
        conversation.save(update_fields=["status", "bot_paused_until", "updated_at"])
        events.conversation_updated(conversation)
    logger.info("Chatwoot conversation %s resolved by staff: conversation %s closed",
                event.external_chatwoot_id, conversation.pk)
    return 1


def apply_events(*, binding: ChannelBinding, parsed: list, buffer_seconds=None, now=None, inbound=None) -> dict:
    """Store every parsed event for one binding; returns counts for logs and tests. `now` is when
    the webhook received them (the buffer counts from there). With an `inbound` list, customer
    messages are added to it as (None, binding, event, now) for the caller's batch write
    (messaging.inbox) instead of being written one by one."""
    counts = {"stored": 0, "duplicates": 0, "statuses": 0, "human": 0, "closed": 0}
    for event in parsed:
        if isinstance(event, InboundMessage) and inbound is not None:
            inbound.append((None, binding, event, now))
        elif isinstance(event, InboundMessage):
            stored = record_inbound(binding=binding, event=event, now=now, buffer_seconds=buffer_seconds)
            counts["stored" if stored else "duplicates"] += 1
        elif isinstance(event, StatusUpdate):
            counts["statuses"] += record_status(tenant_id=binding.tenant_id, provider=binding.provider, event=event)
        elif isinstance(event, ReadUpTo):
            counts["statuses"] += record_read(binding=binding, event=event)
        elif isinstance(event, HumanReply):
            counts["human"] += 1 if record_human_reply(binding=binding, event=event, now=now) else 0
        elif isinstance(event, ConversationResolved):
            counts["closed"] += record_resolved(binding=binding, event=event)
    return counts

"""What the staff sockets can ask for. Each handler runs synchronously (database_sync_to_async)
with the tenant resolved from the users table, and goes through messaging's services."""

from __future__ import annotations

from dataclasses import dataclass

from messaging import services
from messaging.live import selectors
from messaging.models import ConversationStatus, Provider
from tenants.models import User

MAX_PLAYGROUND_BUFFER_SECONDS = 60


@dataclass
class SocketContext:
    tenant_id: int
    user_id: object
    conversation_id: int | None = None


class FrameError(Exception):
    """A request refused with a message naming the problem (sent as an error frame)."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


def conversation_exists(tenant_id: int, conversation_id: int) -> bool:
    return selectors.get_conversation(tenant_id, conversation_id) is not None


def add_tool_calls(tenant_id: int, messages: list[dict]) -> list[dict]:
    return selectors.with_tool_calls(tenant_id, messages)


def _text(frame: dict) -> str:
    text = frame.get("text")
    if not isinstance(text, str) or not text.strip():
        raise FrameError("invalid_text", "'text' must be a non-empty string.")
    return text.strip()


def _conversation(ctx: SocketContext):
    conversation = selectors.get_conversation(ctx.tenant_id, ctx.conversation_id)
    if conversation is None:  # deleted while the socket was open
        raise FrameError("not_found", f"ChatConversation {ctx.conversation_id} not found or access denied")
    return conversation


def _service(call):
    try:
        return call()
    except (services.MessagingError, services.NotFound) as exc:
        raise FrameError("refused", str(exc)) from None


def inbox_snapshot(ctx: SocketContext, frame: dict) -> dict:
    return {"conversations": selectors.inbox_rows(ctx.tenant_id)}


def history(ctx: SocketContext, frame: dict) -> dict:
    return {"messages": selectors.pane_messages(ctx.tenant_id, ctx.conversation_id)}


def reply(ctx: SocketContext, frame: dict) -> dict:
    text = _text(frame)
    conversation = _conversation(ctx)
    if conversation.status == ConversationStatus.CLOSED:
        raise FrameError(
            "conversation_closed",
            f"Conversation {conversation.pk} is closed; reopen it before replying.",
        )
    user = User.objects.filter(pk=ctx.user_id).first()
    messages = _service(lambda: services.staff_reply(
        tenant_id=ctx.tenant_id, conversation_id=conversation.pk, text=text, user=user,
    ))
    return {"message_ids": [m.pk for m in messages]}


def set_bot(ctx: SocketContext, frame: dict) -> dict:
    paused = frame.get("paused")
    if not isinstance(paused, bool):
        raise FrameError("invalid_paused", "'paused' must be true or false.")
    conversation = _service(lambda: services.set_bot_paused(
        tenant_id=ctx.tenant_id, conversation_id=ctx.conversation_id, paused=paused,
    ))
    return {"paused": paused, "bot_paused_until": conversation.bot_paused_until}


def retry(ctx: SocketContext, frame: dict) -> dict:
    message_id = frame.get("message_id")
    if not isinstance(message_id, int):
        raise FrameError("invalid_message_id", "'message_id' must be an integer.")
    if not selectors.message_in_conversation(ctx.tenant_id, ctx.conversation_id, message_id):
        raise FrameError("not_found", f"ChatMessage {message_id} not found or access denied")
    message = _service(lambda: services.retry_message(tenant_id=ctx.tenant_id, message_id=message_id))
    return {"message_id": message.pk, "status": message.status}


def playground_say(ctx: SocketContext, frame: dict) -> dict:
    """The staff, as a simulated customer, writes to the agent (same buffer path as webhooks)."""
    text = _text(frame)
    conversation = _conversation(ctx)
    if conversation.provider != Provider.PLAYGROUND:
        raise FrameError("not_playground", "Only playground conversations take simulated customer messages.")
    seconds = frame.get("buffer_seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= MAX_PLAYGROUND_BUFFER_SECONDS:
        raise FrameError(
            "invalid_buffer_seconds", f"'buffer_seconds' must be a number from 0 to {MAX_PLAYGROUND_BUFFER_SECONDS}."
        )
    message = _service(lambda: services.inject_inbound(
        tenant_id=ctx.tenant_id, conversation_id=conversation.pk, text=text, buffer_seconds=float(seconds),
    ))
    return {"message_id": message.pk}

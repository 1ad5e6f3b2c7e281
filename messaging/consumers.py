"""Websockets for staff screens: `/ws/inbox/` and `/ws/conversations/<id>/`.

Authenticated by the Django session (AuthMiddlewareStack); the tenant comes from the users table
(`resolve_tenant`), never from the socket. A conversation of another tenant (or none) is
accepted and closed at once with code 4404, with nothing sent. Client frames are JSON objects
with a `type`; a frame that is not JSON or has an unknown type answers an error frame and the
connection stays up. Server frames: {"type": "event", "kind": ..., ...} for live events
(published by messaging.events, delivered by this process's messaging.live.bus; a
{"type": "event", "kind": "resync"} frame says events may have been missed and the screen should
reload its snapshot), "ack" for a handled request, "error", "pong".
"""

from __future__ import annotations

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.core.exceptions import PermissionDenied

from messaging.live import actions
from messaging.live.bus import bus
from tenants.resolution import resolve_tenant

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class StaffSocket(AsyncWebsocketConsumer):
    """Session auth, tenant resolution, JSON frames and error frames; subclasses name groups."""

    # frame type -> name of a function in messaging.live.actions taking (socket_context, frame)
    frames: dict[str, str] = {}
    tenant_id: int | None = None
    groups_joined: list[str]

    async def connect(self):
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_staff:
            return await self._refuse(CLOSE_UNAUTHENTICATED)
        try:
            self.tenant_id = await database_sync_to_async(resolve_tenant)(user.pk)
        except PermissionDenied:
            return await self._refuse(CLOSE_FORBIDDEN)
        groups = await self.groups_for_connection()
        if groups is None:
            return await self._refuse(CLOSE_NOT_FOUND)
        for group in groups:
            await bus().join(group, self)
            self.groups_joined.append(group)
        await self.accept()

    async def _refuse(self, code: int):
        # Accept first so the browser sees the close code (a refused handshake shows only 1006);
        # no data frame is ever sent on a refused socket.
        await self.accept()
        await self.close(code=code)

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", []):
            bus().leave(group, self)

    async def groups_for_connection(self) -> list[str] | None:
        raise NotImplementedError

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is None:
            return await self.send_error("invalid_frame", "Frames must be JSON text, not binary.")
        try:
            frame = json.loads(text_data)
        except ValueError as exc:
            return await self.send_error("invalid_json", f"Frame is not valid JSON: {exc}.")
        if not isinstance(frame, dict):
            return await self.send_error("invalid_frame", "A frame must be a JSON object with a 'type'.")
        kind = frame.get("type")
        if kind == "ping":
            return await self.send_json({"type": "pong"})
        handler_name = self.frames.get(kind) if isinstance(kind, str) else None
        if handler_name is None:
            allowed = ", ".join(sorted(["ping", *self.frames]))
            return await self.send_error("unknown_type", f"Unknown frame type {kind!r}; expected one of: {allowed}.")
        handler = getattr(actions, handler_name)
        try:
            result = await database_sync_to_async(handler)(self.context(), frame)
        except actions.FrameError as exc:
            return await self.send_error(exc.code, str(exc), request=frame.get("request"))
        except Exception:
            logger.exception("Frame %s failed for tenant %s", kind, self.tenant_id)
            return await self.send_error("server_error", "The request failed; it has been logged.", request=frame.get("request"))
        await self.send_json({"type": "ack", "for": kind, "request": frame.get("request"), **(result or {})})

    def context(self) -> actions.SocketContext:
        return actions.SocketContext(tenant_id=self.tenant_id, user_id=self.scope["user"].pk)

    async def send_json(self, data: dict):
        await self.send(text_data=json.dumps(data, default=str))

    async def send_error(self, code: str, detail: str, request=None):
        await self.send_json({"type": "error", "code": code, "detail": detail, "request": request})

    async def live_event(self, event):
        """Group messages from messaging.events: {"type": "live.event", "payload": {...}}."""
        payload = event.get("payload") or {}
        if payload.get("tenant_id") not in (None, self.tenant_id):
            return  # never forward another tenant's event, whatever reached the group
        await self.send_json({"type": "event", **payload})


class InboxConsumer(StaffSocket):
    frames = {"inbox": "inbox_snapshot"}

    async def groups_for_connection(self):
        return [f"inbox.{self.tenant_id}"]


class ConversationConsumer(StaffSocket):
    frames = {
        "reply": "reply",
        "bot": "set_bot",
        "retry": "retry",
        "say": "playground_say",
        "history": "history",
    }

    async def groups_for_connection(self):
        self.conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        exists = await database_sync_to_async(actions.conversation_exists)(self.tenant_id, self.conversation_id)
        return [f"conversation.{self.conversation_id}"] if exists else None

    def context(self) -> actions.SocketContext:
        context = super().context()
        context.conversation_id = self.conversation_id
        return context

    async def live_event(self, event):
        # Staff see the agent turn's tool calls under its messages: events carry only the turn id.
        payload = event.get("payload") or {}
        message = payload.get("message") or {}
        if payload.get("kind") == "message.created" and message.get("turn_id"):
            [message] = await database_sync_to_async(actions.add_tool_calls)(self.tenant_id, [dict(message)])
            event = {**event, "payload": {**payload, "message": message}}
        await super().live_event(event)

"""The staff's live screens, served inside the admin (login, staff check, admin chrome).

Pages are server-rendered; platform_ai/static/live/live.js keeps them live over the
websockets in messaging.consumers. The tenant is the one the middleware resolved from the
users table; platform administrators (no tenant) are told to sign in as a tenant's staff.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import Http404
from django.shortcuts import render

from messaging.live import selectors
from messaging.models import ChannelSource


def _context(request, **extra) -> dict:
    # The admin's model sidebar would squeeze the two columns; these pages link back instead.
    return {**admin.site.each_context(request), "is_nav_sidebar_enabled": False, **extra}


def _needs_tenant(request, title: str):
    return render(request, "live/no_tenant.html", _context(request, title=title), status=403)


def live_view(request, conversation_id: int | None = None):
    if request.tenant_id is None:
        return _needs_tenant(request, "Live conversations")
    conversation = None
    if conversation_id is not None:
        conversation = selectors.get_conversation(request.tenant_id, conversation_id)
        if conversation is None:
            raise Http404(f"ChatConversation {conversation_id} not found or access denied")
    return render(request, "live/live.html", _context(
        request,
        title="Live conversations",
        rows=selectors.inbox_rows(request.tenant_id),
        conversation=conversation,
        pane_messages=selectors.pane_messages(request.tenant_id, conversation.pk) if conversation else [],
        channels=dict(ChannelSource.choices),
    ))

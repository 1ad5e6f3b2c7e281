"""The playground: staff chat with an agent as a simulated customer.

It is an ordinary conversation with provider `playground` (messaging creates it), so the
message goes through the same buffer → turn → relay path as a WhatsApp message, and the
relay's playground provider "delivers" by the live event the pane already listens to.
"""

from __future__ import annotations

from django.contrib import admin
from django.shortcuts import render

from messaging import services
from messaging.live import selectors
from messaging.live.views import _context, _needs_tenant
from vault.credentials import check_credentials
from vault.schemas import CATEGORY_LABELS

BUFFER_CHOICES = [0, 2, 5, 16]


def playground_contact_id(user, agent_id) -> str:
    """One playground conversation per staff user and agent."""
    return f"staff-{user.pk}-agent-{agent_id}"


def playground_view(request):
    if request.tenant_id is None:
        return _needs_tenant(request, "The playground")
    agents = selectors.agents_for_playground(request.tenant_id)
    chosen = next((a for a in agents if str(a["id"]) == request.GET.get("agent", "")), agents[0] if agents else None)
    conversation, messages, missing = None, [], ""
    if chosen is not None:
        conversation = services.playground_conversation(
            tenant_id=request.tenant_id, agent_id=chosen["id"],
            contact_id=playground_contact_id(request.user, chosen["id"]), contact_name=f"{request.user.get_username()} (test)",
        )
        messages = selectors.pane_messages(request.tenant_id, conversation.pk)
        category = chosen["credential_category"]
        if not check_credentials(request.tenant_id, category):
            missing = f"{CATEGORY_LABELS.get(category, category)} credentials not configured"
    return render(request, "live/playground.html", _context(
        request, title="Playground", agents=agents, chosen=chosen, conversation=conversation, pane_messages=messages,
        missing_credentials=missing, buffer_choices=BUFFER_CHOICES, buffer_default=0,
    ))

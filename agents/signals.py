"""Signals the agents app sends; messaging listens (agents never imports messaging)."""

from django.dispatch import Signal

# Sent after a turn whose agent called handoff_to_human.
# kwargs: tenant_id, agent_id, conversation_id, reason, turn_id
handoff_requested = Signal()

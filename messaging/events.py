"""Live events for staff screens (websocket consumers live in messaging.consumers).

Contract: every event is published after the current transaction commits, to the channel-layer
groups `inbox.<tenant_id>` (conversation list) and `conversation.<conversation_id>` (one pane),
as {"type": "live.event", "payload": {"kind": ..., ...}}. Kinds: message.created,
message.status, conversation.updated, turn.typing. Filled in by the messaging work.
"""

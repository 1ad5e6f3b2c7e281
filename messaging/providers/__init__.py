"""Outbound providers, looked up by name. The relay is the only caller.

A provider is any object with `name`, `spaced` (True: messages to one recipient keep the relay
spacing) and `send(*, message, conversation) -> SendResult`, raising `DeliveryError` on failure.
Register one with `register_provider(obj)`; a later registration under the same name replaces
the earlier one (the staff playground may plug in its own).
"""

from __future__ import annotations

from messaging.providers.base import DeliveryError, SendResult, get_provider, register_provider, registered_providers

__all__ = ["DeliveryError", "SendResult", "get_provider", "register_provider", "registered_providers"]

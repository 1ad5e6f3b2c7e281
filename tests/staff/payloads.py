"""Provider-shaped bodies the staff tests post (WhatsApp Cloud, as in Meta's webhook reference)."""

from __future__ import annotations

import json
import uuid

from messaging.signatures import sign_meta


def whatsapp_text(*, phone_number_id: str, wa_id: str, name: str, text: str, message_id: str | None = None) -> dict:
    return {
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "1234567890987654321",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "5491150000000", "phone_number_id": phone_number_id},
                    "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                    "messages": [{
                        "from": wa_id, "id": message_id or f"wamid.{uuid.uuid4().hex}", "timestamp": "1764000000",
                        "type": "text", "text": {"body": text},
                    }],
                },
            }],
        }],
    }


def signed_meta_request(body: dict, secret: str) -> tuple[bytes, dict]:
    raw = json.dumps(body).encode()
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": sign_meta(secret, raw)}

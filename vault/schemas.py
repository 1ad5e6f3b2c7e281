"""What each credential category holds: which names exist, which are required, which are secret."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CredentialName:
    name: str
    required: bool = True
    secret: bool = True


def _schema(*names: CredentialName) -> dict[str, CredentialName]:
    return {n.name: n for n in names}


CATEGORY_SCHEMAS: dict[str, dict[str, CredentialName]] = {
    "openai": _schema(CredentialName("API_KEY"), CredentialName("BASE_URL", required=False, secret=False)),
    "google": _schema(CredentialName("API_KEY")),
    "smtp": _schema(
        CredentialName("HOST", secret=False),
        CredentialName("PORT", secret=False),
        CredentialName("USER", required=False, secret=False),
        CredentialName("PASSWORD", required=False),
        CredentialName("FROM", secret=False),
        CredentialName("USE_TLS", required=False, secret=False),
        CredentialName("HANDOFF_TO", required=False, secret=False),
        # Where customers' data requests (Tienda Nube customers/data_request) are mailed; HANDOFF_TO when unset.
        CredentialName("PRIVACY_TO", required=False, secret=False),
    ),
    "tiendanube": _schema(CredentialName("STORE_ID", secret=False), CredentialName("ACCESS_TOKEN")),
    "whatsapp_cloud": _schema(CredentialName("PHONE_NUMBER_ID", secret=False), CredentialName("ACCESS_TOKEN")),
    "chatwoot": _schema(
        CredentialName("BASE_URL", secret=False),
        CredentialName("ACCOUNT_ID", secret=False),
        CredentialName("CHATWOOT_API_TOKEN"),
        CredentialName("CHATWOOT_BOT_TOKEN", required=False),
        CredentialName("WEBHOOK_SECRET", required=False),
    ),
    "ycloud": _schema(
        CredentialName("API_KEY"),
        CredentialName("WEBHOOK_SECRET"),
        CredentialName("FROM_NUMBER", secret=False),
    ),
    "meta": _schema(
        CredentialName("USER_TOKEN"),
        CredentialName("PAGE_TOKEN", required=False),
        # JSON {page_id: page token} when the tenant connected several pages (Meta connect).
        CredentialName("PAGE_TOKENS", required=False),
    ),
}

CATEGORY_LABELS = {
    "openai": "OpenAI",
    "google": "Google",
    "smtp": "SMTP",
    "tiendanube": "Tienda Nube",
    "whatsapp_cloud": "WhatsApp Cloud",
    "chatwoot": "Chatwoot",
    "ycloud": "YCloud",
    "meta": "Meta",
}


class UnknownCredential(ValueError):
    pass


def validate_name(category: str, name: str) -> CredentialName:
    """Return the schema entry, or raise UnknownCredential listing the allowed values."""
    if category not in CATEGORY_SCHEMAS:
        raise UnknownCredential(
            f"Unknown credential category '{category}'. Allowed: {', '.join(sorted(CATEGORY_SCHEMAS))}."
        )
    names = CATEGORY_SCHEMAS[category]
    if name not in names:
        raise UnknownCredential(
            f"Unknown credential name '{name}' for category '{category}'. Allowed: {', '.join(names)}."
        )
    return names[name]


def is_secret(category: str, name: str) -> bool:
    entry = CATEGORY_SCHEMAS.get(category, {}).get(name)
    return True if entry is None else entry.secret


def mask(value: str, *, secret: bool = True) -> str:
    """`sk-…a1b2` for secrets (never more than 3 + 4 characters shown); plain for non-secrets."""
    if not secret:
        return value
    if len(value) <= 8:
        return "…" + value[-2:] if len(value) > 4 else "…"
    return f"{value[:3]}…{value[-4:]}"


def check_value(value: str) -> str:
    """A credential's value as stored: trimmed, one line. Tokens go into HTTP headers, where a
    line break makes the request fail with an error that quotes the token."""
    value = str(value).strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("The value must be one line without control characters (line breaks, tabs).")
    return value

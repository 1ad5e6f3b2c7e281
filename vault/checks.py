"""FIELD_ENCRYPTION_KEY is set, well formed, and decrypts the canary stored at install time."""

from django.conf import settings
from django.core.checks import Error, register
from django.db import DatabaseError


@register("security", deploy=False)
def check_encryption_key(app_configs=None, databases=None, **kwargs):
    from vault.fields import VaultDecryptionError, decrypt, encrypt

    keys = getattr(settings, "FIELD_ENCRYPTION_KEY", None)
    if not keys:
        return [Error("FIELD_ENCRYPTION_KEY is not set.", id="vault.E001")]
    try:
        if decrypt(encrypt("probe")) != "probe":
            raise VaultDecryptionError("round trip failed")
    except Exception as exc:
        return [Error(f"FIELD_ENCRYPTION_KEY does not work: {exc}", id="vault.E002")]
    if not databases or "default" not in databases:
        return []
    from vault.models import KeyCanary

    try:
        canary = KeyCanary.objects.order_by("pk").first()
    except DatabaseError:
        return []  # not migrated yet
    except VaultDecryptionError:
        return [
            Error(
                "FIELD_ENCRYPTION_KEY cannot decrypt the stored key canary: the key is wrong, or the key "
                "that encrypted the vault was removed before rotation.",
                hint="Put the previous key back at the end of the comma-separated list and run "
                "`manage.py rotate_credentials`.",
                id="vault.E003",
            )
        ]
    if canary is not None and canary.token != KeyCanary.PLAINTEXT:
        return [Error("The vault key canary decrypted to an unexpected value.", id="vault.E004")]
    return []

"""An encrypted text field that fails loudly.

django-encrypted-model-fields hands back the raw Fernet token when it cannot decrypt (wrong or
missing key). Here that is an error: a ciphertext must never travel on as if it were a key.
"""

from __future__ import annotations

from cryptography.fernet import InvalidToken
from django.db import models
from encrypted_model_fields import fields as emf


class VaultDecryptionError(RuntimeError):
    pass


def decrypt(token: str) -> str:
    try:
        return emf.CRYPTER.decrypt(token.encode("utf-8")).decode("utf-8")
    except InvalidToken:
        raise VaultDecryptionError(
            "A vault value could not be decrypted: FIELD_ENCRYPTION_KEY is wrong, or the key that "
            "encrypted it was removed from the list before `manage.py rotate_credentials` ran."
        ) from None


def encrypt(value: str) -> str:
    return emf.CRYPTER.encrypt(value.encode("utf-8")).decode("utf-8")


class StrictEncryptedTextField(emf.EncryptedTextField):
    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return decrypt(value)

    def to_python(self, value):
        # Values reaching to_python come from forms or code (plaintext): never try to decrypt.
        return models.TextField.to_python(self, value)

    def get_db_prep_save(self, value, connection):
        if value is None:
            return None
        return encrypt(str(value))

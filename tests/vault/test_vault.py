"""The vault: encrypted at rest, loud on a wrong key, masked everywhere, rotatable."""

from __future__ import annotations

from asgiref.sync import async_to_sync
import io
import logging

import pytest
from cryptography.fernet import Fernet, MultiFernet
from django.core.management import call_command
from django.db import connection
from django.test import Client
from encrypted_model_fields import fields as emf

from vault import credentials as vault
from vault.checks import check_encryption_key
from vault.fields import VaultDecryptionError
from vault.models import Credential, KeyCanary
from vault.schemas import mask

pytestmark = pytest.mark.django_db

SECRET = "sk-proj-VerySecretValue-a1b2"


@pytest.fixture
def crypter():
    """Swap the process-wide crypter (the package reads the key once, at import)."""
    original = emf.CRYPTER

    def use(*keys):
        emf.CRYPTER = MultiFernet([Fernet(k) for k in keys])

    yield use
    emf.CRYPTER = original


def _raw_values():
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM vault_credential ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def test_values_are_ciphertext_at_rest(tenant_a):
    vault.set_tenant_credential(tenant_a.pk, "openai", "API_KEY", SECRET)
    (raw,) = _raw_values()
    assert SECRET not in raw and raw.startswith("gAAAA")
    assert vault.get_tenant_credential_sync(tenant_a.pk, "openai", "API_KEY") == SECRET


def test_async_get_and_check(tenant_a):
    assert not vault.check_credentials(tenant_a.pk, "openai")
    vault.set_tenant_credential(tenant_a.pk, "openai", "API_KEY", SECRET)
    assert vault.check_credentials(tenant_a.pk, "openai")  # BASE_URL is optional
    # async_to_sync keeps the sync part on this thread (and its test transaction).
    assert async_to_sync(vault.get_tenant_credential)(tenant_a.pk, "openai", "API_KEY") == SECRET
    assert Credential.objects.for_tenant(tenant_a.pk).get().last_used_at is not None


def test_missing_credential_names_tenant_category_and_name(tenant_a):
    with pytest.raises(vault.CredentialNotConfigured) as info:
        vault.get_tenant_credential_sync(tenant_a.pk, "tiendanube", "ACCESS_TOKEN")
    assert str(info.value) == f"Credential tiendanube/ACCESS_TOKEN is not configured for tenant {tenant_a.pk}."
    assert info.value.public_message == "Tienda Nube credentials not configured"


def test_other_tenants_keys_are_not_reachable(tenant_a, tenant_b):
    vault.set_tenant_credential(tenant_b.pk, "openai", "API_KEY", SECRET)
    with pytest.raises(vault.CredentialNotConfigured):
        vault.get_tenant_credential_sync(tenant_a.pk, "openai", "API_KEY")


def test_cache_is_invalidated_on_write(tenant_a, settings):
    settings.VAULT_CACHE_SECONDS = 300
    vault.set_tenant_credential(tenant_a.pk, "openai", "API_KEY", SECRET)
    assert vault.get_tenant_credential_sync(tenant_a.pk, "openai", "API_KEY") == SECRET
    vault.set_tenant_credential(tenant_a.pk, "openai", "API_KEY", "sk-rotated-0000000")
    assert vault.get_tenant_credential_sync(tenant_a.pk, "openai", "API_KEY") == "sk-rotated-0000000"


def test_disabled_category_reads_as_not_configured(tenant_a):
    vault.set_tenant_credential(tenant_a.pk, "tiendanube", "ACCESS_TOKEN", "tn-token-123456789")
    vault.set_tenant_credential(tenant_a.pk, "tiendanube", "STORE_ID", "1234")
    assert vault.disable_category(tenant_a.pk, "tiendanube") == 2
    assert not vault.check_credentials(tenant_a.pk, "tiendanube")
    with pytest.raises(vault.CredentialNotConfigured):
        vault.get_tenant_credential_sync(tenant_a.pk, "tiendanube", "ACCESS_TOKEN")


def test_wrong_key_raises_instead_of_returning_ciphertext(tenant_a, crypter):
    vault.set_tenant_credential(tenant_a.pk, "openai", "API_KEY", SECRET)
    vault.invalidate_cache()
    crypter(Fernet.generate_key())
    with pytest.raises(VaultDecryptionError, match="FIELD_ENCRYPTION_KEY"):
        vault.get_tenant_credential_sync(tenant_a.pk, "openai", "API_KEY")
    errors = check_encryption_key(databases=["default"])
    assert [e.id for e in errors] == ["vault.E003"]


def test_check_passes_with_the_right_key(db):
    assert KeyCanary.objects.exists()
    assert check_encryption_key(databases=["default"]) == []


def test_rotation_reencrypts_every_row_under_the_new_key(tenant_a, tenant_b, crypter):
    old, new = Fernet.generate_key(), Fernet.generate_key()
    canaries = list(KeyCanary.objects.all())  # read under the install key
    crypter(old)
    for tenant in (tenant_a, tenant_b):
        vault.set_tenant_credential(tenant.pk, "openai", "API_KEY", SECRET + tenant.slug)
    for canary in canaries:
        canary.save()
    crypter(new, old)  # new first: encrypts; old still decrypts
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_credentials", stdout=out, stderr=err)
    assert "Re-encrypted 2 of 2 credentials" in out.getvalue()
    assert "2/2" in err.getvalue()  # the progress bar
    crypter(new)  # the old key is gone: everything must still decrypt
    vault.invalidate_cache()
    assert vault.get_tenant_credential_sync(tenant_b.pk, "openai", "API_KEY") == SECRET + "shop-b"
    assert check_encryption_key(databases=["default"]) == []
    assert all(Fernet(new).decrypt(raw.encode()) for raw in _raw_values())


def test_mask():
    assert mask("sk-proj-abcdefghijklmnop-a1b2") == "sk-…a1b2"
    assert mask("short") == "…rt"
    assert mask("1234", secret=True) == "…"
    assert mask("https://gw.example", secret=False) == "https://gw.example"


# --- API ----------------------------------------------------------------------------------

def test_api_create_returns_masked_value_only(api_a, tenant_a, caplog):
    with caplog.at_level(logging.DEBUG):
        response = api_a.post("/api/v1/credentials/", {"category": "openai", "name": "API_KEY", "value": SECRET}, format="json")
        listing = api_a.get("/api/v1/credentials/")
        detail = api_a.get(f"/api/v1/credentials/{response.json()['id']}/")
    assert response.status_code == 201
    body = response.json()
    assert body["masked_value"] == "sk-…a1b2" and "value" not in body
    for r in (response, listing, detail):
        assert SECRET not in r.content.decode()
    assert SECRET not in caplog.text


def test_api_non_secret_names_are_shown(api_a):
    response = api_a.post("/api/v1/credentials/", {"category": "tiendanube", "name": "STORE_ID", "value": "123456"}, format="json")
    assert response.json()["masked_value"] == "123456"


@pytest.mark.parametrize(
    "payload,field,fragment",
    [
        ({"category": "aws", "name": "API_KEY", "value": "x"}, "category", "openai"),
        ({"category": "openai", "name": "TOKEN", "value": "x"}, "name", "Allowed: API_KEY, BASE_URL"),
        ({"category": "openai", "name": "API_KEY", "value": ""}, "value", "blank"),
        ({"category": "openai", "name": "API_KEY", "value": "   "}, "value", "blank"),
        ({"category": "openai", "name": "API_KEY"}, "value", "required"),
        ({"category": "openai", "name": "API_KEY", "value": "sk-abc\ndef-123456"}, "value", "one line"),
    ],
)
def test_api_bad_input_is_a_400_naming_the_problem(api_a, payload, field, fragment):
    response = api_a.post("/api/v1/credentials/", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"] and fragment in body["detail"]
    assert Credential.dangerously_unscoped.count() == 0


def test_api_duplicate_is_a_409(api_a):
    first = api_a.post("/api/v1/credentials/", {"category": "google", "name": "API_KEY", "value": "g-1234567890"}, format="json")
    again = api_a.post("/api/v1/credentials/", {"category": "google", "name": "API_KEY", "value": "g-0987654321"}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "conflict" and str(first.json()["id"]) in again.json()["detail"]


def test_api_update_and_delete(api_a, tenant_a):
    created = api_a.post("/api/v1/credentials/", {"category": "google", "name": "API_KEY", "value": "g-1234567890"}, format="json").json()
    assert vault.get_tenant_credential_sync(tenant_a.pk, "google", "API_KEY") == "g-1234567890"
    patched = api_a.patch(f"/api/v1/credentials/{created['id']}/", {"value": "g-newvalue-999"}, format="json")
    assert patched.status_code == 200
    assert vault.get_tenant_credential_sync(tenant_a.pk, "google", "API_KEY") == "g-newvalue-999"
    assert api_a.delete(f"/api/v1/credentials/{created['id']}/").status_code == 204
    with pytest.raises(vault.CredentialNotConfigured):
        vault.get_tenant_credential_sync(tenant_a.pk, "google", "API_KEY")


def test_secrets_are_scrubbed_from_logs_even_when_code_logs_them(tenant_a, caplog):
    vault.set_tenant_credential(tenant_a.pk, "openai", "API_KEY", SECRET)
    value = vault.get_tenant_credential_sync(tenant_a.pk, "openai", "API_KEY")
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.provider").error("Provider said: invalid key %s", value)
        try:
            raise ValueError(f"bad key {value}")
        except ValueError:
            logging.getLogger("some.provider").exception("Call failed")
    assert SECRET not in caplog.text
    assert "Provider said: invalid key sk-…a1b2" in caplog.text


# --- Admin --------------------------------------------------------------------------------

def test_admin_never_shows_plaintext_and_takes_a_write_only_value(user_a, tenant_a):
    client = Client()
    client.force_login(user_a)
    response = client.post(
        "/admin/vault/credential/add/", {"category": "openai", "name": "API_KEY", "new_value": SECRET}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    cred = Credential.objects.for_tenant(tenant_a.pk).get()
    assert cred.value == SECRET and cred.tenant_id == tenant_a.pk
    for url in ("/admin/vault/credential/", f"/admin/vault/credential/{cred.pk}/change/"):
        html = client.get(url).content.decode()
        assert SECRET not in html and "sk-…a1b2" in html
    # Saving without a new value keeps the old one.
    client.post(f"/admin/vault/credential/{cred.pk}/change/", {"category": "openai", "name": "API_KEY", "new_value": ""})
    vault.invalidate_cache()
    assert vault.get_tenant_credential_sync(tenant_a.pk, "openai", "API_KEY") == SECRET


def test_admin_rejects_unknown_names(user_a):
    client = Client()
    client.force_login(user_a)
    response = client.post("/admin/vault/credential/add/", {"category": "openai", "name": "NOPE", "new_value": "x"})
    assert response.status_code == 200 and "Allowed: API_KEY, BASE_URL" in response.content.decode()


def test_a_pasted_trailing_newline_is_trimmed_and_inner_control_characters_refused(tenant_a, api_a):
    vault.set_tenant_credential(tenant_a.pk, "openai", "API_KEY", "sk-trailing-123456\n")
    assert vault.get_tenant_credential_sync(tenant_a.pk, "openai", "API_KEY") == "sk-trailing-123456"
    with pytest.raises(ValueError, match="one line"):
        vault.set_tenant_credential(tenant_a.pk, "openai", "API_KEY", "sk-a\r\nInjected: header")
    created = api_a.post("/api/v1/credentials/", {"category": "google", "name": "API_KEY", "value": "g-1234567890"},
                         format="json").json()
    patched = api_a.patch(f"/api/v1/credentials/{created['id']}/", {"value": "g-12\t34567890"}, format="json")
    assert patched.status_code == 400 and "one line" in patched.json()["detail"]


def test_each_page_token_of_a_token_map_is_scrubbed_from_logs(tenant_a, caplog):
    import json

    vault.set_tenant_credential(tenant_a.pk, "meta", "PAGE_TOKENS", json.dumps({"PAGE1": "EAAG-page-one-token"}))
    vault.get_tenant_credential_sync(tenant_a.pk, "meta", "PAGE_TOKENS")
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.provider").error("Graph refused token %s", "EAAG-page-one-token")
    assert "EAAG-page-one-token" not in caplog.text

"""Chat models built from the tenant's own keys in the vault (never from the environment)."""

from __future__ import annotations

import asyncio
import threading
import weakref

from django.conf import settings
from langchain_core.language_models import BaseChatModel

from agents.catalog import CatalogModel, get_model
from vault.credentials import get_optional_credential, get_tenant_credential_sync


def build_chat_model(
    *, tenant_id: int, model_version: str, temperature: float | None, event_loop: asyncio.AbstractEventLoop | None = None
) -> BaseChatModel:
    """ChatOpenAI or ChatGoogleGenerativeAI for the catalog model, with the tenant's key.

    Raises vault.credentials.CredentialNotConfigured when the provider's key is missing and
    agents.catalog.UnknownModel for a model_version outside the catalog. The temperature is
    passed only to models that accept it. `event_loop`: the loop an async turn runs on (its
    HTTP connections are pooled per loop; a pool never crosses loops).
    """
    entry = get_model(model_version)
    temperature = temperature if entry.accepts_temperature else None
    if entry.provider == "openai":
        return _openai(tenant_id, entry, temperature, event_loop)
    if entry.provider == "google":
        return _google(tenant_id, entry, temperature)
    raise ValueError(f"Model {entry.key} names an unknown provider '{entry.provider}'.")


_loop_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict]" = weakref.WeakKeyDictionary()
_loop_clients_lock = threading.Lock()


def _async_http_client(loop: asyncio.AbstractEventLoop, base_url: str | None):
    """One async connection pool per event loop and base URL.

    LangChain caches one async client per process; its connections belong to the loop that
    opened them, so a second loop (asyncio.run, async_to_sync) fails with "Event loop is closed".
    """
    import openai

    with _loop_clients_lock:
        clients = _loop_clients.setdefault(loop, {})
        client = clients.get(base_url)
        if client is None:
            client = clients[base_url] = openai.DefaultAsyncHttpxClient(timeout=settings.AGENT_MODEL_TIMEOUT_SECONDS)
        return client


def _openai(tenant_id: int, entry: CatalogModel, temperature: float | None, event_loop=None) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    api_key = get_tenant_credential_sync(tenant_id, "openai", "API_KEY")
    base_url = get_optional_credential(tenant_id, "openai", "BASE_URL") or None
    kwargs = dict(entry.chat_kwargs)
    if temperature is not None:
        kwargs["temperature"] = temperature
    if event_loop is not None:
        kwargs["http_async_client"] = _async_http_client(event_loop, base_url)
    return ChatOpenAI(
        model=entry.model_id,
        api_key=api_key,
        base_url=base_url,
        # Chat Completions on purpose: tool calling and usage are the same for every model here.
        use_responses_api=False,
        stream_usage=True,
        timeout=settings.AGENT_MODEL_TIMEOUT_SECONDS,
        max_retries=settings.AGENT_MODEL_MAX_RETRIES,
        **kwargs,
    )


def _google(tenant_id: int, entry: CatalogModel, temperature: float | None) -> BaseChatModel:
    from langchain_google_genai import ChatGoogleGenerativeAI

    api_key = get_tenant_credential_sync(tenant_id, "google", "API_KEY")
    kwargs = dict(entry.chat_kwargs)
    if settings.GOOGLE_API_BASE:
        kwargs["base_url"] = settings.GOOGLE_API_BASE
    return ChatGoogleGenerativeAI(
        model=entry.model_id,
        google_api_key=api_key,
        temperature=temperature,
        timeout=settings.AGENT_MODEL_TIMEOUT_SECONDS,
        max_retries=settings.AGENT_MODEL_MAX_RETRIES,
        **kwargs,
    )

"""Chat models built from the tenant's own keys in the vault (never from the environment)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from dataclasses import dataclass

from django.conf import settings
from langchain_core.language_models import BaseChatModel

from agents.catalog import get_model
from vault.credentials import get_optional_credential, get_tenant_credential_sync


@dataclass(frozen=True)
class ModelSpec:
    """Everything a chat model is built from (the key included, so never log or return it)."""

    provider: str
    model_id: str
    api_key: str
    base_url: str | None
    temperature: float | None
    extra: tuple = ()

    def __repr__(self) -> str:  # the key stays out of tracebacks and logs
        return f"ModelSpec({self.provider}, {self.model_id}, base_url={self.base_url!r})"

    @property
    def fingerprint(self) -> tuple:
        """A cache key that changes with the key without holding it in clear."""
        key_digest = hashlib.sha256(self.api_key.encode()).hexdigest()
        return (self.provider, self.model_id, key_digest, self.base_url, self.temperature, self.extra)


def model_spec(*, tenant_id: int, model_version: str, temperature: float | None) -> ModelSpec:
    """Read the tenant's key for the catalog model's provider.

    Raises vault.credentials.CredentialNotConfigured when the key is missing and
    agents.catalog.UnknownModel for a model_version outside the catalog. The temperature is
    kept only for models that accept it.
    """
    entry = get_model(model_version)
    if entry.provider not in ("openai", "google"):
        raise ValueError(f"Model {entry.key} names an unknown provider '{entry.provider}'.")
    api_key = get_tenant_credential_sync(tenant_id, entry.provider, "API_KEY")
    if entry.provider == "openai":
        base_url = get_optional_credential(tenant_id, "openai", "BASE_URL") or None
    else:
        base_url = settings.GOOGLE_API_BASE or None
    return ModelSpec(
        provider=entry.provider, model_id=entry.model_id, api_key=api_key, base_url=base_url,
        temperature=temperature if entry.accepts_temperature else None,
        extra=tuple(sorted(entry.chat_kwargs.items())),
    )


def build_chat_model(
    *, tenant_id: int, model_version: str, temperature: float | None, event_loop: asyncio.AbstractEventLoop | None = None
) -> BaseChatModel:
    """ChatOpenAI or ChatGoogleGenerativeAI with the tenant's key (see model_spec)."""
    return chat_model_from_spec(
        model_spec(tenant_id=tenant_id, model_version=model_version, temperature=temperature), event_loop
    )


def chat_model_from_spec(spec: ModelSpec, event_loop: asyncio.AbstractEventLoop | None = None) -> BaseChatModel:
    """`event_loop`: the loop an async turn runs on (HTTP pools never cross loops)."""
    if spec.provider == "openai":
        return _openai(spec, event_loop)
    return _google(spec)


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


def _openai(spec: ModelSpec, event_loop=None) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    kwargs = dict(spec.extra)
    if spec.temperature is not None:
        kwargs["temperature"] = spec.temperature
    if event_loop is not None:
        kwargs["http_async_client"] = _async_http_client(event_loop, spec.base_url)
    return ChatOpenAI(
        model=spec.model_id,
        api_key=spec.api_key,
        base_url=spec.base_url,
        # Chat Completions on purpose: tool calling and usage are the same for every model here.
        use_responses_api=False,
        stream_usage=True,
        timeout=settings.AGENT_MODEL_TIMEOUT_SECONDS,
        max_retries=settings.AGENT_MODEL_MAX_RETRIES,
        **kwargs,
    )


def _google(spec: ModelSpec) -> BaseChatModel:
    from langchain_google_genai import ChatGoogleGenerativeAI

    kwargs = dict(spec.extra)
    if spec.base_url:
        kwargs["base_url"] = spec.base_url
    return ChatGoogleGenerativeAI(
        model=spec.model_id,
        google_api_key=spec.api_key,
        temperature=spec.temperature,
        timeout=settings.AGENT_MODEL_TIMEOUT_SECONDS,
        max_retries=settings.AGENT_MODEL_MAX_RETRIES,
        **kwargs,
    )

"""Embedders: the tenant's provider through the vault, or a local one for development.

RAG_EMBEDDER chooses: `local` (default; no key, no network), `openai` (text-embedding-3-small,
1536 dims, the tenant's openai/API_KEY and optional BASE_URL), `google` (gemini-embedding-001
reduced to 768 dims, google/API_KEY), or `auto` (openai if the tenant has its key, else google).

The local embedder is NOT semantic: it hashes character trigrams and words into 384 signed
buckets. Texts sharing words and spellings land close together, synonyms and paraphrases do not.
It is deterministic, which is what tests and offline demos need; use a real provider in production.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from typing import Callable, Protocol, Sequence

from django.conf import settings

from vault.credentials import CredentialNotConfigured, get_optional_credential, get_tenant_credential_sync

logger = logging.getLogger(__name__)

RETRY_ATTEMPTS = 4
_sleep: Callable[[float], None] = time.sleep  # tests replace it; no test waits on the clock


class EmbeddingError(RuntimeError):
    """The provider refused or failed; the message is safe to show to the tenant."""


class Embedder(Protocol):
    model: str
    dims: int

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


def _normalized(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


class LocalHashEmbedder:
    """Hashed character trigrams + words into 384 dims (deterministic, not semantic)."""

    model = "local-hash-384"
    dims = 384

    def _features(self, text: str):
        words = re.findall(r"\w+", text.lower())
        for word in words:
            yield "w:" + word, 2.0
            padded = f" {word} "
            for i in range(len(padded) - 2):
                yield "c:" + padded[i : i + 3], 1.0

    def embed_query(self, text: str) -> list[float]:
        vector = [0.0] * self.dims
        for feature, weight in self._features(text):
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dims
            vector[bucket] += weight if digest[4] & 1 else -weight
        return _normalized(vector)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]


def with_retries(call: Callable[[], list], *, is_retriable: Callable[[Exception], bool], what: str):
    """Retry 429/5xx/connection errors with exponential backoff (0.5 s, 1 s, 2 s)."""
    for attempt in range(RETRY_ATTEMPTS):
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - classified just below
            if attempt + 1 >= RETRY_ATTEMPTS or not is_retriable(exc):
                raise
            delay = 0.5 * 2**attempt
            logger.warning("%s failed (%s), retry %s in %.1fs", what, type(exc).__name__, attempt + 1, delay)
            _sleep(delay)
    raise AssertionError("unreachable")


class _BatchingEmbedder:
    provider = ""

    def _embed_batch(self, texts: list[str]) -> list[list[float]]:
        raise NotImplementedError

    def _is_retriable(self, exc: Exception) -> bool:
        raise NotImplementedError

    def _describe(self, exc: Exception) -> str:
        return str(exc)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        size = max(1, settings.RAG_EMBED_BATCH_SIZE)
        for start in range(0, len(texts), size):
            batch = list(texts[start : start + size])
            try:
                vectors += with_retries(
                    lambda: self._embed_batch(batch), is_retriable=self._is_retriable, what=f"{self.provider} embeddings"
                )
            except EmbeddingError:
                raise
            except Exception as exc:  # noqa: BLE001 - every provider failure becomes one clear error
                raise EmbeddingError(f"{self.provider} embeddings failed: {self._describe(exc)}") from exc
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class OpenAIEmbedder(_BatchingEmbedder):
    provider = "OpenAI"
    dims = 1536

    def __init__(self, api_key: str, base_url: str | None = None, model: str = "text-embedding-3-small"):
        import openai

        self.model = model
        # Our own retry loop (max_retries=0) so backoff is visible in logs and testable.
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url or None, max_retries=0, timeout=30)

    def _embed_batch(self, texts):
        response = self._client.embeddings.create(model=self.model, input=texts)
        ordered = sorted(response.data, key=lambda item: item.index)
        if len(ordered) != len(texts):
            raise EmbeddingError(f"OpenAI returned {len(ordered)} embeddings for {len(texts)} texts")
        return [list(item.embedding) for item in ordered]

    def _is_retriable(self, exc):
        import openai

        return isinstance(exc, (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError))

    def _describe(self, exc):
        status = getattr(exc, "status_code", None)
        body = getattr(exc, "body", None)
        message = (body.get("message") if isinstance(body, dict) else None) or getattr(exc, "message", None) or str(exc)
        return f"HTTP {status}: {message}" if status else message


class GoogleEmbedder(_BatchingEmbedder):
    provider = "Google"
    dims = 768

    def __init__(self, api_key: str, model: str = "gemini-embedding-001"):
        from google import genai
        from google.genai import types

        self.model = model
        http_options = types.HttpOptions(base_url=settings.GOOGLE_API_BASE) if settings.GOOGLE_API_BASE else None
        self._client = genai.Client(api_key=api_key, http_options=http_options)
        self._config = types.EmbedContentConfig(output_dimensionality=self.dims)

    def _embed_batch(self, texts):
        response = self._client.models.embed_content(model=self.model, contents=texts, config=self._config)
        # Reduced-dimension Gemini embeddings are not unit length; normalise for cosine scores.
        return [_normalized(item.values) for item in response.embeddings]

    def _is_retriable(self, exc):
        code = getattr(exc, "code", None)
        return isinstance(code, int) and (code == 429 or code >= 500)


def embedder_for_tenant(tenant_id: int) -> Embedder:
    """The embedder RAG_EMBEDDER names, built with the tenant's vault keys."""
    choice = settings.RAG_EMBEDDER
    if choice == "local":
        return LocalHashEmbedder()
    if choice == "auto":
        choice = "openai" if get_optional_credential(tenant_id, "openai", "API_KEY") else "google"
    if choice == "openai":
        return OpenAIEmbedder(
            get_tenant_credential_sync(tenant_id, "openai", "API_KEY"),
            base_url=get_optional_credential(tenant_id, "openai", "BASE_URL"),
        )
    if choice == "google":
        return GoogleEmbedder(get_tenant_credential_sync(tenant_id, "google", "API_KEY"))
    raise EmbeddingError(f"Unknown RAG_EMBEDDER '{choice}'. Allowed: local, openai, google, auto.")


__all__ = [
    "CredentialNotConfigured", "Embedder", "EmbeddingError", "GoogleEmbedder", "LocalHashEmbedder",
    "OpenAIEmbedder", "embedder_for_tenant",
]

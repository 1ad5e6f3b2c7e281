"""`rag_search`: the knowledge-base tool agents get from the registry (tenant bound by the runtime)."""

from __future__ import annotations

import json

from asgiref.sync import sync_to_async
from langchain_core.tools import tool

from agents.registry import ToolContext, register_tool
from rag.embedders import EmbeddingError
from rag.selectors import EmptyQuery, search_knowledge
from rag.vectorstore import VectorStoreUnavailable
from vault.credentials import CredentialNotConfigured

DEFAULT_K = 5


@register_tool(
    "rag_search",
    description="Search the shop's knowledge base (manuals, policies, FAQs) for passages that answer a question.",
    prompt_injection=(
        "Use rag_search before answering questions about the shop's policies, products' manuals, "
        "shipping, returns or anything the shop documented; quote what it returns and cite the document. "
        "If it finds nothing relevant, say you will check with a human instead of guessing."
    ),
    config={"timeout": 10},
)
def build_rag_search(ctx: ToolContext, config: dict):
    include_shadow = bool(ctx.agent_settings.get("shadow_rag_enabled"))
    k = int(config.get("k", DEFAULT_K))

    @tool
    async def rag_search(query: str, collection: str | None = None) -> str:
        """Search the shop's knowledge base. `collection` may be "General" or "ADN Personal" (the owner's
        own writing style); leave it empty to search everything."""
        try:
            hits = await sync_to_async(search_knowledge)(
                tenant_id=ctx.tenant_id, query=query, collection=collection or None, k=k,
                include_shadow=include_shadow,
            )
        except (EmptyQuery, ValueError) as exc:
            return f"rag_search: {exc}"
        except CredentialNotConfigured as exc:
            return f"rag_search unavailable: {exc.public_message}"
        except (EmbeddingError, VectorStoreUnavailable) as exc:
            return f"rag_search unavailable: {exc}"
        if not hits:
            return "No passages found in the knowledge base."
        return json.dumps(
            [
                {"source": h["document"]["filename"], "collection": h["collection"], "score": h["score"],
                 "content": h["content"]}
                for h in hits
            ],
            ensure_ascii=False,
        )

    return rag_search

"""The fake OpenAI server speaks the protocol the real SDK and LangChain expect."""

from __future__ import annotations

import openai
import pytest
from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from tests.fakes.openai_server import Reply, fake_embedding


def _client(server):
    return openai.OpenAI(api_key="sk-fake", base_url=server.base_url, max_retries=0)


def test_sdk_non_streaming_text_and_usage(openai_server):
    openai_server.push(Reply.text("hola"))
    result = _client(openai_server).chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "hi there"}]
    )
    assert result.choices[0].message.content == "hola"
    assert result.usage.prompt_tokens == 2
    assert openai_server.last_request["messages"][0]["content"] == "hi there"


def test_sdk_streaming_tool_call(openai_server):
    openai_server.push(Reply.tool_call("lookup", {"q": "x"}))
    stream = _client(openai_server).chat.completions.create(
        model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    args = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in chunks if c.choices and c.choices[0].delta.tool_calls
    )
    assert args == '{"q": "x"}'
    assert chunks[-1].usage.total_tokens > 0


def test_sdk_error_status(openai_server):
    openai_server.push(Reply.error(401))
    with pytest.raises(openai.AuthenticationError) as excinfo:
        _client(openai_server).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert excinfo.value.code == "invalid_api_key"


@pytest.mark.parametrize("streaming", [False, True])
def test_langchain_agent_round_trip(openai_server, streaming):
    @tool
    def lookup(q: str) -> str:
        """Look something up."""
        return f"found {q}"

    openai_server.push(Reply.tool_call("lookup", {"q": "mallas"}), Reply.text("Listo"))
    model = ChatOpenAI(model="gpt-5-mini", api_key="sk-fake", base_url=openai_server.base_url,
                       streaming=streaming, use_responses_api=False, max_retries=0)
    agent = create_agent(model, tools=[lookup], system_prompt="Sos una asesora.")
    state = agent.invoke({"messages": [{"role": "user", "content": "hola"}]})
    assert state["messages"][-1].content == "Listo"
    assert openai_server.system_prompt() == "Sos una asesora."
    tool_message = openai_server.messages()[-1]
    assert tool_message["role"] == "tool" and tool_message["content"] == "found mallas"
    assert bool(openai_server.requests[0].get("stream")) is streaming


def test_embeddings_deterministic_with_dimensions(openai_server):
    embedder = OpenAIEmbeddings(api_key="sk-fake", base_url=openai_server.base_url, dimensions=8,
                                model="text-embedding-3-small", check_embedding_ctx_length=False)
    first, second = embedder.embed_documents(["hola", "chau"])
    assert len(first) == 8
    assert first == pytest.approx(fake_embedding("hola", 8), abs=1e-6)
    assert embedder.embed_query("hola") == pytest.approx(first, abs=1e-6)
    plain = _client(openai_server).embeddings.create(model="m", input="hola", encoding_format="float")
    assert len(plain.data[0].embedding) == 1536

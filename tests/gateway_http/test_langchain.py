"""LangChain's ``ChatOpenAI`` against ``/v1``, configured as a user would: base URL and key."""

from __future__ import annotations

from decimal import Decimal

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from podium.models.base import Usage
from podium.testing.simulators.server import Fault, Reply, ScriptedToolCall
from tests.gateway_http.conftest import GROUP, ML_KEY, Served


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def _chat(served: Served, **kw: object) -> ChatOpenAI:
    return ChatOpenAI(model=GROUP, base_url=served.url, api_key=ML_KEY, max_retries=0, **kw)


def test_invoke(served: Served) -> None:
    served.sim.script(Reply(text="Bonjour !", input_tokens=5, output_tokens=2))
    answer = _chat(served, temperature=0).invoke("Say hello in French")
    assert isinstance(answer, AIMessage)
    assert answer.content == "Bonjour !"
    assert answer.usage_metadata is not None
    assert (answer.usage_metadata["input_tokens"], answer.usage_metadata["output_tokens"]) == (5, 2)
    assert answer.response_metadata["model_name"] == "gpt-4o-mini"
    (row,) = served.ledger_rows()
    assert row.cost == served.cost(Usage(input_tokens=5, output_tokens=2)) > Decimal(0)


async def test_stream(served: Served) -> None:
    chat = _chat(served, stream_usage=True)
    chunks = [chunk async for chunk in chat.astream("stream these words back to me")]
    text = "".join(str(c.content) for c in chunks)
    assert text == "You said: stream these words back to me"
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.usage_metadata is not None
    assert total.usage_metadata["output_tokens"] == 8


def test_bind_tools_round_trip(served: Served) -> None:
    served.sim.script(
        Reply(tool_calls=[ScriptedToolCall("get_weather", {"city": "Paris"}, id="call_7")]),
        Reply(text="It is sunny in Paris."),
    )
    chat = _chat(served).bind_tools([get_weather])
    question = HumanMessage("What is the weather in Paris?")
    first = chat.invoke([question])
    assert isinstance(first, AIMessage)
    (call,) = first.tool_calls
    assert call["name"] == "get_weather"
    assert call["args"] == {"city": "Paris"}
    assert call["id"] == "call_7"
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id="call_7")
    second = chat.invoke([question, first, result])
    assert second.content == "It is sunny in Paris."
    sent = served.sim.requests[-1].json()
    assert sent["messages"][2] == {
        "role": "tool",
        "tool_call_id": "call_7",
        "content": "sunny in Paris",
    }


def test_a_cut_stream_raises_in_langchain(served: Served) -> None:
    import openai

    served.sim.inject(Fault(after_chunks=3))
    with pytest.raises(openai.APIError, match="broke after it started"):
        for _ in _chat(served).stream("a long answer please"):
            pass

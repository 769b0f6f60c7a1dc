"""The official Anthropic Python client against /v1/messages, and the official OpenAI client
against an Anthropic provider, through a running modelgate gateway.

Run by tests/anthropic_client.rs, which starts fake upstreams that speak the Anthropic
Messages API and OpenAI Chat Completions, and the gateway with these aliases:
- `smart`: an `anthropic` provider (model claude-sonnet-4-5), where /v1/messages passes through;
- `gpt`: an `openai-compatible` provider (model gpt-4o), where /v1/messages is translated.
"""

import json
import os

import anthropic
import openai
import pytest

ORIGIN = os.environ["MODELGATE_ORIGIN"]
WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def claude():
    # The client's own key stays at the gateway; the provider's key is sent upstream.
    return anthropic.Anthropic(base_url=ORIGIN, api_key="client-key", max_retries=0)


@pytest.fixture(scope="module")
def gpt_client():
    return openai.OpenAI(base_url=f"{ORIGIN}/v1", api_key="client-key", max_retries=0)


@pytest.mark.parametrize("alias,served", [("smart", "anthropic served claude-sonnet-4-5"), ("gpt", "openai served gpt-4o")])
def test_messages_create(claude, alias, served):
    message = claude.messages.create(
        model=alias,
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello!"}],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == f"{served}: Hello!"
    assert message.stop_reason == "end_turn"
    assert message.id.startswith("msg_")
    if alias == "smart":
        # Passed through: Anthropic's own answer and counts.
        assert message.model == "claude-sonnet-4-5"
        assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (21, 100)
    else:
        assert message.model == "gpt"
        assert (message.usage.input_tokens, message.usage.cache_read_input_tokens) == (20, 10)
        assert message.usage.output_tokens == 7


@pytest.mark.parametrize("alias,served", [("smart", "anthropic served claude-sonnet-4-5"), ("gpt", "openai served gpt-4o")])
def test_messages_stream(claude, alias, served):
    with claude.messages.stream(
        model=alias, max_tokens=100, messages=[{"role": "user", "content": "Stream please"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == f"{served}: Stream please"
    assert len(pieces) > 1, "the answer arrives in several events"
    assert final.stop_reason == "end_turn"
    expected = {"smart": (21, 9), "gpt": (20, 7)}[alias]
    assert (final.usage.input_tokens, final.usage.output_tokens) == expected


@pytest.mark.parametrize("alias", ["smart", "gpt"])
def test_tools_round_trip(claude, alias):
    ask = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    message = claude.messages.create(model=alias, max_tokens=200, tools=[WEATHER], messages=ask)
    assert message.stop_reason == "tool_use"
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [c.input for c in calls] == [{"city": "Paris", "unit": "celsius"}, {"city": "Tokyo"}]
    assert all(c.name == "get_weather" for c in calls)

    with claude.messages.stream(model=alias, max_tokens=200, tools=[WEATHER], messages=ask) as stream:
        streamed = stream.get_final_message()
    assert [b.input for b in streamed.content if b.type == "tool_use"] == [c.input for c in calls]

    results = [{"type": "tool_result", "tool_use_id": c.id, "content": f"{i}C"} for i, c in enumerate(calls)]
    answer = claude.messages.create(
        model=alias,
        max_tokens=200,
        tools=[WEATHER],
        messages=ask + [{"role": "assistant", "content": message.content}, {"role": "user", "content": results}],
    )
    assert answer.content[0].text == f"results: {calls[0].id}=0C, {calls[1].id}=1C"


def test_count_tokens(claude):
    messages = [{"role": "user", "content": "How many tokens is this?"}]
    assert claude.messages.count_tokens(model="smart", messages=messages).input_tokens == 77
    assert claude.messages.count_tokens(model="gpt", messages=messages).input_tokens > 0


def test_errors_come_in_anthropics_shape(claude):
    with pytest.raises(anthropic.NotFoundError) as raised:
        claude.messages.create(model="no-such-alias", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert "GET /v1/models" in raised.value.message
    with pytest.raises(anthropic.BadRequestError) as raised:
        claude.messages.create(
            model="gpt",
            max_tokens=4096,
            thinking={"type": "enabled", "budget_tokens": 2048},
            messages=[{"role": "user", "content": "x"}],
        )
    assert "'thinking'" in raised.value.message


def test_openai_client_chat_against_an_anthropic_provider(gpt_client):
    reply = gpt_client.chat.completions.create(
        model="smart", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content == "anthropic served claude-sonnet-4-5: Hi"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 126
    assert reply.usage.prompt_tokens_details.cached_tokens == 100
    assert reply.usage.completion_tokens == 9


def test_openai_client_stream_with_usage_against_an_anthropic_provider(gpt_client):
    chunks = list(
        gpt_client.chat.completions.create(
            model="smart",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "anthropic served claude-sonnet-4-5: Hi"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 126


def test_openai_client_tools_against_an_anthropic_provider(gpt_client):
    tools = [{"type": "function", "function": {"name": WEATHER["name"], "parameters": WEATHER["input_schema"]}}]
    ask = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    reply = gpt_client.chat.completions.create(model="smart", messages=ask, tools=tools)
    assert reply.choices[0].finish_reason == "tool_calls"
    calls = reply.choices[0].message.tool_calls
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris", "unit": "celsius"}, {"city": "Tokyo"}]

    arguments = {}
    for chunk in gpt_client.chat.completions.create(model="smart", messages=ask, tools=tools, stream=True):
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            arguments[call.index] = arguments.get(call.index, "") + (call.function.arguments or "")
    assert [json.loads(arguments[i]) for i in sorted(arguments)] == [json.loads(c.function.arguments) for c in calls]

    follow_up = ask + [
        reply.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": calls[0].id, "content": "18C"},
        {"role": "tool", "tool_call_id": calls[1].id, "content": "25C"},
    ]
    answer = gpt_client.chat.completions.create(model="smart", messages=follow_up, tools=tools)
    assert answer.choices[0].message.content == f"results: {calls[0].id}=18C, {calls[1].id}=25C"

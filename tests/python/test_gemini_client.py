"""The official OpenAI Python client against an alias whose provider is Gemini.

Run by tests/gemini_client.rs, which starts a fake Gemini API and the gateway and sets
MODELGATE_BASE_URL. The client changes nothing but the base URL: the gateway translates.
"""

import json
import os

import openai
import pytest

BASE_URL = os.environ["MODELGATE_BASE_URL"]

WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather now in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
]


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key="client-key", max_retries=0)


def test_chat_completion(client):
    reply = client.chat.completions.create(
        model="gemini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello!"},
        ],
    )
    choice = reply.choices[0]
    assert choice.message.content == "gemini served gemini-2.5-flash: Hello!"
    assert choice.finish_reason == "stop"
    assert reply.usage.prompt_tokens == 25
    assert reply.usage.completion_tokens == 10
    assert reply.usage.prompt_tokens_details.cached_tokens == 10
    assert reply.usage.completion_tokens_details.reasoning_tokens == 3


def test_streamed_chat_completion_with_usage(client):
    stream = client.chat.completions.create(
        model="gemini",
        messages=[{"role": "user", "content": "Tell me a story"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == "gemini served gemini-2.5-flash: Tell me a story"
    assert finish == "stop"
    assert usage.total_tokens == 35


def test_parallel_tool_calls_and_their_results(client):
    messages = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    reply = client.chat.completions.create(model="gemini", messages=messages, tools=WEATHER)
    assert reply.choices[0].finish_reason == "tool_calls"
    message = reply.choices[0].message
    calls = message.tool_calls
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Paris", "unit": "celsius"},
        {"city": "Tokyo"},
    ]
    assert len({c.id for c in calls}) == 2
    # As OpenAI's own guide does it: the assistant message object, then one result per call.
    messages.append(message)
    for call in calls:
        city = json.loads(call.function.arguments)["city"]
        messages.append(
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"city": city, "sky": "clear"})}
        )
    final = client.chat.completions.create(model="gemini", messages=messages, tools=WEATHER)
    assert final.choices[0].message.content == (
        'results: get_weather={"city":"Paris","sky":"clear"}, get_weather={"city":"Tokyo","sky":"clear"}'
    )


def test_streamed_tool_calls_join_to_the_same_calls(client):
    messages = [{"role": "user", "content": "Weather in Paris and Tokyo?"}]
    whole = client.chat.completions.create(model="gemini", messages=messages, tools=WEATHER)
    stream = client.chat.completions.create(model="gemini", messages=messages, tools=WEATHER, stream=True)
    calls, finish = {}, None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                slot = calls.setdefault(delta.index, {"name": "", "arguments": ""})
                slot["name"] += delta.function.name or ""
                slot["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    assert [calls[i] for i in sorted(calls)] == [
        {"name": c.function.name, "arguments": c.function.arguments} for c in whole.choices[0].message.tool_calls
    ]


def test_embeddings_as_floats_and_as_base64(client):
    # The client asks for base64 unless told otherwise, and decodes it itself.
    default = client.embeddings.create(model="gemini-embedder", input=["hi", "Gemini"])
    floats = client.embeddings.create(model="gemini-embedder", input=["hi", "Gemini"], encoding_format="float")
    for result in (default, floats):
        assert [d.embedding for d in result.data] == [[2.0, 0.8125, 0.5], [6.0, 0.5546875, 0.5]]
        assert [d.index for d in result.data] == [0, 1]


def test_an_unsupported_parameter_is_a_400_naming_it(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="gemini",
            messages=[{"role": "user", "content": "Hi"}],
            logit_bias={"50256": -100},
        )
    assert raised.value.param == "logit_bias"
    assert "dropUnsupportedParams" in raised.value.message


def test_a_quota_error_is_a_rate_limit_with_retry_after(client):
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "rate limit me"}])
    assert raised.value.response.headers["retry-after"] == "37"
    assert "Quota exceeded" in raised.value.message

"""The official OpenAI Python client against a Bedrock alias (Converse behind the gateway).

Run by tests/provider_bedrock.rs, which starts a fake Bedrock runtime and the gateway, and
sets MODELGATE_BASE_URL. The alias `claude` reaches the model
`anthropic.claude-3-5-sonnet-20240620-v1:0`; `titan` reaches Titan text embeddings v2.
(Not named test_*.py: tests/openai_client.rs runs the directory without this gateway.)
"""

import json
import os

import openai
import pytest

BASE_URL = os.environ["MODELGATE_BASE_URL"]
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "The current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key="client-key", max_retries=0)


def test_chat(client):
    reply = client.chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}],
        max_tokens=64,
    )
    assert reply.choices[0].message.content == f"bedrock served {MODEL}"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 15
    assert reply.usage.prompt_tokens_details.cached_tokens == 4
    assert reply.usage.completion_tokens == 7


def test_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Hello!"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"bedrock served {MODEL}"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage.total_tokens == 22


def test_tools_streamed_and_not_agree(client):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    reply = client.chat.completions.create(model="claude", messages=messages, tools=TOOLS, tool_choice="auto")
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}

    arguments, names, ids = "", [], []
    finish = None
    for chunk in client.chat.completions.create(model="claude", messages=messages, tools=TOOLS, stream=True):
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            arguments += delta.function.arguments or ""
            if delta.function.name:
                names.append(delta.function.name)
            if delta.id:
                ids.append(delta.id)
        finish = chunk.choices[0].finish_reason or finish
    assert arguments == call.function.arguments
    assert names == ["weather"] and ids == [call.id]
    assert finish == "tool_calls"

    # The tool's result goes back, and the model answers.
    messages += [reply.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}]
    answer = client.chat.completions.create(model="claude", messages=messages, tools=TOOLS)
    assert answer.choices[0].message.content == f"bedrock served {MODEL}"


def test_unsupported_parameter_is_a_400_naming_it(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "Hi"}], logit_bias={"42": 1}
        )
    assert "logit_bias" in str(error.value)


def test_embeddings(client):
    reply = client.embeddings.create(model="titan", input=["hello there", "hi"], dimensions=4)
    assert [d.index for d in reply.data] == [0, 1]
    assert reply.data[0].embedding[0] == len("hello there")
    assert len(reply.data[1].embedding) == 4
    assert reply.usage.prompt_tokens == 3

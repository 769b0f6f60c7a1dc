"""The official OpenAI Python client streaming a tool call through an alias whose response
rules mask (`masked`) or block (`blocked`) AWS access keys (run by tests/guardrails_tools.rs,
which sets MODELGATE_BASE_URL; the upstream splits the key across argument chunks).

Not named test_*.py: tests/openai_client.rs collects that directory with other aliases.
"""

import json
import os

import openai
import pytest

client = openai.OpenAI(base_url=os.environ["MODELGATE_BASE_URL"], api_key="unused", max_retries=0)
TOOLS = [{"type": "function", "function": {"name": "deploy", "parameters": {"type": "object"}}}]


def ask(model, **kwargs):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "deploy it"}], tools=TOOLS, **kwargs
    )


def test_streamed_arguments_arrive_masked_and_still_parse():
    arguments = ""
    finish = None
    for chunk in ask("masked", stream=True):
        for call in chunk.choices[0].delta.tool_calls or []:
            assert call.index == 0
            arguments += call.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    parsed = json.loads(arguments)
    assert parsed == {"region": "eu-west-1", "key": "[AWS_ACCESS_KEY]", "note": "deploy"}


def test_the_stream_helper_assembles_the_masked_call():
    with client.chat.completions.stream(
        model="masked", messages=[{"role": "user", "content": "deploy it"}], tools=TOOLS
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.id == "call_1" and call.function.name == "deploy"
    assert json.loads(call.function.arguments)["key"] == "[AWS_ACCESS_KEY]"


def test_a_whole_answer_has_its_arguments_masked():
    call = ask("masked").choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments)["key"] == "[AWS_ACCESS_KEY]"


def test_a_blocking_rule_ends_the_stream_with_an_error():
    arguments = ""
    with pytest.raises(openai.APIError) as raised:
        for chunk in ask("blocked", stream=True):
            for call in chunk.choices[0].delta.tool_calls or []:
                arguments += call.function.arguments or ""
    assert "'secrets'" in raised.value.message
    assert "AKIA" not in raised.value.message and "AKIA" not in arguments


def test_a_blocked_whole_answer_is_a_bad_request():
    with pytest.raises(openai.BadRequestError) as raised:
        ask("blocked")
    assert raised.value.code == "content_policy_violation"

"""The official OpenAI Python client against an alias with guardrails (run by
tests/guardrails.rs, which sets MODELGATE_BASE_URL and scripts the upstream's answer).

Not named test_*.py: tests/openai_client.rs collects that directory with other aliases.
"""

import os

import openai
import pytest

client = openai.OpenAI(base_url=os.environ["MODELGATE_BASE_URL"], api_key="unused", max_retries=0)


def ask(text, **kwargs):
    return client.chat.completions.create(
        model="guarded", messages=[{"role": "user", "content": text}], **kwargs
    )


def test_a_blocked_request_is_a_bad_request_naming_the_rule():
    with pytest.raises(openai.BadRequestError) as raised:
        ask("deploy with AKIAIOSFODNN7EXAMPLE")
    assert raised.value.code == "content_policy_violation"
    assert "'secrets'" in raised.value.message
    assert "AKIA" not in raised.value.message


def test_a_masked_answer_arrives_masked():
    answer = ask("my card is 4111 1111 1111 1111")
    assert answer.choices[0].message.content == "Write to [EMAIL], thanks."


def test_a_masked_stream_arrives_masked():
    stream = ask("hello", stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Write to [EMAIL], thanks."


def test_a_request_over_the_output_cap_is_clamped_not_refused():
    answer = ask("hello", max_tokens=100000)
    assert answer.choices[0].finish_reason == "stop"

"""The official Anthropic Python client against an alias with guardrails on /v1/messages (run
by tests/guardrails.rs, which sets MODELGATE_ORIGIN and scripts the upstream's answer).

Not named test_*.py, so that no directory run collects it against other aliases.
"""

import os

import anthropic
import pytest

client = anthropic.Anthropic(base_url=os.environ["MODELGATE_ORIGIN"], api_key="unused", max_retries=0)


def ask(text, **kwargs):
    return dict(model="guarded", max_tokens=4096, messages=[{"role": "user", "content": text}], **kwargs)


def test_a_blocked_request_is_an_anthropic_bad_request_naming_the_rule():
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(**ask("deploy with AKIAIOSFODNN7EXAMPLE"))
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert "'secrets'" in raised.value.body["error"]["message"]
    assert "AKIA" not in str(raised.value.body)


def test_a_masked_answer_arrives_masked():
    message = client.messages.create(**ask("my card is 4111 1111 1111 1111"))
    assert message.content[0].text == "Write to [EMAIL], thanks."
    assert message.stop_reason == "end_turn"


def test_a_masked_stream_arrives_masked_and_whole():
    with client.messages.stream(**ask("hello")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Write to [EMAIL], thanks."
    assert final.content[0].text == text

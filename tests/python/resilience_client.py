"""The official OpenAI Python client against a gateway whose providers fail.

Run by tests/resilience.rs, which starts fault-injecting upstreams and the gateway and sets
MODELGATE_BASE_URL. Fallbacks are invisible to the client; failures arrive as the client's
own error types.
"""

import os

import openai
import pytest

BASE_URL = os.environ["MODELGATE_BASE_URL"]
HELLO = [{"role": "user", "content": "Hello!"}]


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key="client-key", max_retries=0)


def test_a_fallback_answers_streamed_and_not(client):
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=HELLO)
    assert raw.headers["x-modelgate-target"] == "good/m2"
    assert raw.parse().choices[0].message.content == "good served m2"
    stream = client.chat.completions.create(model="chat", messages=HELLO, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "good served m2"


def test_a_stream_reset_before_content_is_replaced_invisibly(client):
    stream = client.chat.completions.create(model="stream", messages=HELLO, stream=True)
    chunks = list(stream)
    roles = [c for c in chunks if c.choices and c.choices[0].delta.role == "assistant"]
    assert len(roles) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "good served m2"
    assert all(c.model == "m2" for c in chunks)


def test_a_stream_cut_after_content_raises_after_the_content(client):
    stream = client.chat.completions.create(model="cut", messages=HELLO, stream=True)
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "cut "
    assert "broke off" in raised.value.message


def test_a_rate_limited_alias_is_a_rate_limit_error(client):
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="limited", messages=HELLO)
    assert raised.value.status_code == 429
    assert int(raised.value.response.headers["retry-after"]) > 0


def test_when_every_try_fails_the_last_status_is_raised(client):
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="down", messages=HELLO)
    assert raised.value.status_code == 500
    assert raised.value.body["message"] == "The server had an error while processing your request."

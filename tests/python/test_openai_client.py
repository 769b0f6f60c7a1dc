"""The official OpenAI Python client against a running modelgate gateway.

Run by tests/openai_client.rs, which starts the gateway and sets MODELGATE_BASE_URL.
"""

import os
import time

import openai
import pytest

BASE_URL = os.environ["MODELGATE_BASE_URL"]


@pytest.fixture(scope="module")
def client():
    # Clients keep their own key; the gateway never forwards it upstream.
    return openai.OpenAI(base_url=BASE_URL, api_key="client-key", max_retries=0)


def test_chat_completion_names_the_target_it_reached(client):
    reply = client.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "Hello!"}]
    )
    assert reply.choices[0].message.content == (
        "Hello from the modelgate mock provider default/mock (model fast-demo-model, alias fast)."
    )
    assert reply.model == "fast-demo-model"
    assert reply.usage.completion_tokens > 0


def test_chat_completion_through_an_upstream_provider(client):
    reply = client.chat.completions.create(
        model="relay", messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content == "alpha served upstream-model-1"
    assert reply.usage.prompt_tokens == 11


def test_streamed_chat_completion(client):
    stream = client.chat.completions.create(
        model="prod.chat.v1",
        messages=[{"role": "user", "content": "Hello!"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == (
        "Hello from the modelgate mock provider default/mock (model smart-demo-model, alias prod.chat.v1)."
    )
    assert len(chunks) > 3, "the answer arrives as several chunks"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_embedding(client):
    # The client asks for base64 by default and decodes it.
    result = client.embeddings.create(model="embedder", input=["first", "second"])
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in result.data)
    assert any(x != 0.0 for x in result.data[0].embedding), "not zero vectors"
    again = client.embeddings.create(model="embedder", input=["first", "second"])
    assert again.data[0].embedding == result.data[0].embedding, "deterministic"
    floats = client.embeddings.create(model="embedder", input=["first", "second"], encoding_format="float")
    for decoded, plain in zip(result.data[0].embedding, floats.data[0].embedding):
        assert decoded == pytest.approx(plain, abs=1e-6), "base64 carries the same vector"


def test_every_response_has_a_request_id(client):
    reply = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Hi"}])
    assert len(reply._request_id) == 36, reply._request_id


def test_rate_limit_headers_reach_the_client_and_cookies_do_not(client):
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.with_raw_response.create(model="limited", messages=[])
    headers = raised.value.response.headers
    assert raised.value.code == "rate_limit_exceeded"
    assert headers["retry-after"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "2s"
    assert "set-cookie" not in headers
    assert "openai-organization" not in headers


def test_the_client_waits_as_long_as_retry_after_says():
    patient = openai.OpenAI(base_url=BASE_URL, api_key="client-key", max_retries=1)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError):
        patient.chat.completions.create(model="limited", messages=[])
    # Without Retry-After the client would wait its own backoff, under 0.5 s.
    assert time.monotonic() - started >= 2.0


def test_models_list(client):
    ids = [model.id for model in client.models.list()]
    assert ids == ["embedder", "fast", "prod.chat.v1", "relay"]


def test_unknown_alias_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-alias", messages=[])
    assert raised.value.code == "model_not_found"
    assert "GET /v1/models" in raised.value.message


def test_disabled_alias_is_permission_denied(client):
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(model="retired", messages=[])
    assert raised.value.code == "model_disabled"

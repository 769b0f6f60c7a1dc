"""The official OpenAI Python client with team keys (run by tests/openai_tenancy.rs, which
starts the gateway with --auth api-key and sets MODELGATE_BASE_URL and the keys).

Not named test_*.py: tests/openai_client.rs collects that directory without tenancy.
"""

import os

import openai
import pytest

BASE_URL = os.environ["MODELGATE_BASE_URL"]


def client(key):
    return openai.OpenAI(base_url=BASE_URL, api_key=key, max_retries=0)


def hello(c, model="cheap"):
    return c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello!"}])


def test_an_unknown_key_is_an_authentication_error():
    with pytest.raises(openai.AuthenticationError) as raised:
        hello(client("mg-not-a-real-key"))
    assert raised.value.code == "invalid_api_key"
    assert "mg-not-a-real-key" not in str(raised.value)


def test_a_team_key_calls_its_alias_and_lists_only_its_models():
    c = client(os.environ["FREE_KEY"])
    assert hello(c).choices[0].message.content == "alpha served cheap-model"
    assert [m.id for m in c.models.list()] == ["cheap"]


def test_an_alias_outside_the_teams_groups_is_permission_denied():
    with pytest.raises(openai.PermissionDeniedError) as raised:
        hello(client(os.environ["FREE_KEY"]), model="premium")
    assert raised.value.code == "model_access_denied"
    assert "'premium'" in raised.value.message and "default/free" in raised.value.message


def test_spent_credits_are_402_and_not_retried():
    c = client(os.environ["BUDGET_KEY"])
    hello(c)  # the budget covers exactly one call
    with pytest.raises(openai.APIStatusError) as raised:
        hello(c)
    assert raised.value.status_code == 402
    assert raised.value.code == "insufficient_credits"


def test_a_rate_limit_is_a_rate_limit_error_with_its_headers():
    c = client(os.environ["LIMITED_KEY"])
    hello(c)
    with pytest.raises(openai.RateLimitError) as raised:
        hello(c)
    assert raised.value.code == "rate_limit_exceeded"
    headers = raised.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"

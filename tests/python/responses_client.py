"""The official OpenAI Python client's Responses API against a running modelgate gateway.

Run by tests/surface_responses.rs, which starts a fake upstream and the gateway with these
aliases and sets MODELGATE_BASE_URL:
  fast   -> the mock provider (translated)
  tools  -> an openai-compatible upstream that calls get_weather when offered tools (translated)
  native -> an openai provider (passed through)
"""

import json
import os

import openai
import pytest

BASE_URL = os.environ["MODELGATE_BASE_URL"]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key="client-key", max_retries=0)


def test_a_text_response(client):
    response = client.responses.create(model="fast", instructions="Be brief.", input="Hello!")
    assert response.output_text == (
        "Hello from the modelgate mock provider default/mock (model fast-demo-model, alias fast)."
    )
    assert response.status == "completed"
    assert response.model == "fast"
    assert response.id.startswith("resp_")
    assert response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


def test_a_streamed_text_response(client):
    events = list(client.responses.create(model="fast", input="Hello!", stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_a_function_tool_round_trip(client):
    question = {"role": "user", "content": "What is the weather in Paris?"}
    first = client.responses.create(model="tools", input=[question], tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris", "unit": "celsius"}

    # As the OpenAI guide does it: the output items go back in, with the call's result.
    second = client.responses.create(
        model="tools",
        input=[question, *first.output, {"type": "function_call_output", "call_id": calls[0].call_id, "output": "14°C"}],
        tools=[WEATHER],
    )
    assert second.output_text == "The tool says 14°C."


def test_a_streamed_function_call_with_the_stream_helper(client):
    # The helper checks the event sequence strictly (items opened before their deltas, done
    # before the response completes) and rebuilds the final response.
    with client.responses.stream(model="tools", input="Weather in Paris?", tools=[WEATHER]) as stream:
        deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    call = final.output[0]
    assert call.type == "function_call"
    assert "".join(deltas) == call.arguments
    assert json.loads(call.arguments) == {"city": "Paris", "unit": "celsius"}
    assert final.usage.input_tokens == 11


def test_the_output_limit_makes_an_incomplete_response(client):
    response = client.responses.create(model="tools", input="Tell me a story.", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "Once upon a"


def test_previous_response_id_is_refused_for_a_translated_model(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="tools", input="And then?", previous_response_id="resp_123")
    assert raised.value.param == "previous_response_id"
    assert "previous_response_id" in raised.value.message


def test_an_openai_provider_passes_through_with_previous_response_id(client):
    response = client.responses.create(model="native", input="And then?", previous_response_id="resp_123")
    assert response.id == "resp_upstream1"
    assert response.output_text == "openai served gpt-4.1"
    assert response.usage.input_tokens == 21

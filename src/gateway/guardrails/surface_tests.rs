//! Where each surface finds the texts of requests and answers.

use serde_json::{json, Value};

use super::*;

/// Every request text as (role, text), JSON source as `json:<text>`, after `each` upper-cased
/// it (to show it is the text itself that is handed out, in place).
fn texts_of(surface: &dyn Surface, body: &mut Value) -> Vec<(MessageRole, String)> {
    let mut seen = Vec::new();
    surface.request_texts(body, &mut |role, text, form| {
        seen.push((
            role,
            if form == Form::Json {
                format!("json:{text}")
            } else {
                text.clone()
            },
        ));
        *text = text.to_uppercase();
    });
    seen
}

/// Every answer text; JSON source (tool calls' arguments) as `json:<text>`, signed text
/// (Anthropic thinking) as `signed:<text>`.
fn answers_of(surface: &dyn Surface, body: &mut Value) -> Vec<String> {
    let mut seen = Vec::new();
    surface.answer_texts(body, &mut |text, form| {
        seen.push(match form {
            Form::Json => format!("json:{text}"),
            Form::Signed => format!("signed:{text}"),
            Form::Plain => text.clone(),
        })
    });
    seen
}

#[test]
fn anthropic_requests_give_system_blocks_messages_and_tool_results_their_roles() {
    use MessageRole::{Assistant, System, Tool, User};
    let mut body = json!({"model": "m", "max_tokens": 10,
    "system": [{"type": "text", "text": "sys one"}, {"type": "text", "text": "sys two"}],
    "messages": [
        {"role": "user", "content": "plain"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "calling"},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": "arg", "n": 3, "z": ["deep"]}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "result"},
            {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "block result"}, {"type": "image", "source": {}}]},
            {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}},
            {"type": "text", "text": "question"}]}
    ]});
    let seen = texts_of(&AnthropicMessages, &mut body);
    let expected: Vec<(MessageRole, String)> = [
        (System, "sys one"),
        (System, "sys two"),
        (User, "plain"),
        (Assistant, "calling"),
        (Assistant, "arg"),
        (Assistant, "deep"),
        (Tool, "result"),
        (Tool, "block result"),
        (User, "doc"),
        (User, "question"),
    ]
    .into_iter()
    .map(|(r, t)| (r, t.to_string()))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(body["messages"][2]["content"][1]["content"][0]["text"], "BLOCK RESULT");
    assert_eq!(body["messages"][2]["content"][2]["source"]["data"], "AAAA");

    let mut body = json!({"system": "a string", "messages": [{"role": "user", "content": "q"}]});
    assert_eq!(
        texts_of(&ANTHROPIC_COUNT_TOKENS, &mut body),
        vec![(System, "a string".to_string()), (User, "q".to_string())]
    );
    assert_eq!(AnthropicMessages.output_fields().map(|f| f.set), Some("max_tokens"));
    assert!(
        ANTHROPIC_COUNT_TOKENS.output_fields().is_none(),
        "count_tokens takes no max_tokens"
    );
}

#[test]
fn responses_requests_give_instructions_input_and_tool_outputs_their_roles() {
    use MessageRole::{Assistant, Developer, System, Tool, User};
    let mut body = json!({"model": "m", "instructions": "be brief", "input": [
        {"role": "developer", "content": "dev"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "part"}, {"type": "input_image", "image_url": "x"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "earlier", "annotations": []}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"q\":1}"},
        {"type": "function_call_output", "call_id": "c", "output": "tool said"},
        {"type": "function_call_output", "call_id": "d", "output": [{"type": "input_text", "text": "tool parts"}]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "not input"}]}
    ]});
    let seen = texts_of(&Responses, &mut body);
    let expected: Vec<(MessageRole, String)> = [
        (System, "be brief"),
        (Developer, "dev"),
        (User, "part"),
        (Assistant, "earlier"),
        (Assistant, "json:{\"q\":1}"),
        (Tool, "tool said"),
        (Tool, "tool parts"),
    ]
    .into_iter()
    .map(|(r, t)| (r, t.to_string()))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(body["input"][4]["output"], "TOOL SAID");
    let mut body = json!({"input": "just text"});
    assert_eq!(texts_of(&Responses, &mut body), vec![(User, "just text".to_string())]);
    assert_eq!(Responses.output_fields().map(|f| f.set), Some("max_output_tokens"));
}

#[test]
fn answers_are_text_reasoning_and_tool_call_arguments() {
    let mut message = json!({"type": "message", "role": "assistant", "content": [
        {"type": "thinking", "thinking": "hidden"},
        {"type": "text", "text": "one"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {"a": "b"}},
        {"type": "text", "text": "two"}]});
    assert_eq!(
        answers_of(&AnthropicMessages, &mut message),
        ["signed:hidden", "one", "b", "two"]
    );
    let mut response = json!({"object": "response", "output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]},
        {"type": "message", "content": [{"type": "output_text", "text": "said", "annotations": []}, {"type": "refusal", "refusal": "no"}]},
        {"type": "function_call", "arguments": "{}"}]});
    assert_eq!(
        answers_of(&Responses, &mut response),
        ["thought", "said", "no", "json:{}"]
    );
    let mut chat = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null,
        "reasoning_content": "why", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}]});
    assert_eq!(answers_of(&OpenAiChat, &mut chat), ["why", "json:{\"a\":1}"]);
}

/// (slot, text, ends) of each event.
fn deltas_of(surface: &dyn Surface, mut event: Value) -> Vec<(u32, Option<String>, bool)> {
    let mut seen = Vec::new();
    surface.event_texts(&mut event, &mut |slot, text, ends| {
        seen.push((slot, text.cloned(), ends))
    });
    seen
}

#[test]
fn stream_events_name_their_slots() {
    let a = &AnthropicMessages;
    let delta = json!({"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "hi"}});
    let two = slot_id(2, TEXT, 0);
    assert_eq!(deltas_of(a, delta), [(two, Some("hi".to_string()), false)]);
    let json_delta =
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{"}});
    assert_eq!(
        deltas_of(a, json_delta),
        [(slot_id(1, ARGUMENTS, 0), Some("{".to_string()), false)]
    );
    assert_eq!(
        deltas_of(a, json!({"type": "content_block_stop", "index": 2})),
        [(two, None, true)]
    );
    assert!(a.is_end("", Some(&json!({"type": "message_stop"}))));
    let made = a.text_event(two, "x".into(), &Value::Null);
    assert_eq!(a.event_name(&made), Some("content_block_delta"));
    assert_eq!(made["delta"], json!({"type": "text_delta", "text": "x"}));

    let r = &Responses;
    let delta = json!({"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "item_id": "msg", "delta": "hi", "sequence_number": 7, "logprobs": []});
    let one = slot_id(1, TEXT, 0);
    assert_eq!(deltas_of(r, delta.clone()), [(one, Some("hi".to_string()), false)]);
    let done = json!({"type": "response.output_text.done", "output_index": 1, "content_index": 0, "text": "hi"});
    assert_eq!(deltas_of(r, done), [(one, None, true)]);
    let made = r.text_event(one, "more".into(), &delta);
    assert_eq!(
        (made["delta"].as_str(), made["item_id"].as_str()),
        (Some("more"), Some("msg"))
    );
    assert_eq!(r.event_name(&made), Some("response.output_text.delta"));
    assert!(r.sequenced() && !a.sequenced());
    assert!(r.is_end("", Some(&json!({"type": "response.incomplete"}))));
    assert!(!r.is_end("", Some(&json!({"type": "response.output_text.done"}))));
}

use serde_json::json;

use crate::llm::chat::FinishReason;
use crate::llm::gemini::from_generate_content;
use crate::llm::FailureClass;

#[test]
fn a_text_answer_becomes_a_chat_completion_with_usage_in_openai_shape() {
    let answer = from_generate_content(include_bytes!("../fixtures/text.json"), "gemini-2.5-flash").expect("reads");
    assert_eq!(answer.id, "chatcmpl-mGAsaOW2KYmG1dkPw5S5sQ4");
    assert_eq!(answer.model, "gemini-2.5-flash");
    let choice = &answer.choices[0];
    assert_eq!(
        choice.message.content.as_deref(),
        Some("AI learns patterns from data and uses them to make predictions.")
    );
    assert_eq!(choice.finish_reason, Some(FinishReason::Stop));
    // Thoughts are completion (and reasoning) tokens; cached tokens are part of the prompt.
    assert_eq!(
        serde_json::to_value(answer.usage).expect("json"),
        json!({"prompt_tokens": 2060, "completion_tokens": 53, "total_tokens": 2113,
            "prompt_tokens_details": {"cached_tokens": 2048},
            "completion_tokens_details": {"reasoning_tokens": 41}})
    );
}

#[test]
fn function_calls_become_tool_calls_with_ids_and_json_arguments() {
    let answer =
        from_generate_content(include_bytes!("../fixtures/function_calls.json"), "gemini-2.5-flash").expect("reads");
    let choice = &answer.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(choice.message.content, None);
    let calls = choice.message.tool_calls.as_ref().expect("tool calls");
    let seen: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.function.name.as_str(), c.function.arguments.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("get_current_temperature", r#"{"location":"Paris","unit":"celsius"}"#),
            ("get_current_temperature", r#"{"location":"Tokyo"}"#),
            ("get_time", "{}"),
        ]
    );
    for call in calls {
        assert!(call.id.starts_with("call_") && call.id.len() <= 40, "{}", call.id);
        assert_eq!(call.kind, "function");
    }
    assert_ne!(calls[0].id, calls[1].id);
    assert_eq!(answer.usage.as_ref().map(|u| u.completion_tokens), Some(110));
}

fn with_finish(reason: &str) -> Vec<u8> {
    json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Once upon"}]}, "finishReason": reason,
        "finishMessage": "Malformed function call: print(x"}]})
    .to_string()
    .into_bytes()
}

#[test]
fn finish_reasons_map_and_failed_generations_are_server_errors() {
    for (reason, expected) in [
        ("STOP", FinishReason::Stop),
        ("MAX_TOKENS", FinishReason::Length),
        ("SAFETY", FinishReason::ContentFilter),
        ("RECITATION", FinishReason::ContentFilter),
        ("BLOCKLIST", FinishReason::ContentFilter),
        ("PROHIBITED_CONTENT", FinishReason::ContentFilter),
        ("SPII", FinishReason::ContentFilter),
        ("OTHER", FinishReason::Stop),
    ] {
        let answer = from_generate_content(&with_finish(reason), "m").expect(reason);
        assert_eq!(answer.choices[0].finish_reason, Some(expected), "{reason}");
    }
    let error = from_generate_content(&with_finish("MALFORMED_FUNCTION_CALL"), "m").expect_err("failed");
    assert_eq!(error.class, FailureClass::ServerError);
    assert!(error.message.contains("MALFORMED_FUNCTION_CALL"), "{}", error.message);
    assert!(error.message.contains("print(x"), "{}", error.message);
}

#[test]
fn a_blocked_prompt_is_a_content_filter_finish_with_the_reason() {
    let body = json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}});
    let answer = from_generate_content(body.to_string().as_bytes(), "m").expect("reads");
    let choice = &answer.choices[0];
    assert_eq!(choice.finish_reason, Some(FinishReason::ContentFilter));
    assert_eq!(choice.message.content, None);
    assert!(choice.message.refusal.as_deref().is_some_and(|r| r.contains("SAFETY")));
    assert_eq!(answer.usage.as_ref().map(|u| u.prompt_tokens), Some(7));
    let empty = from_generate_content(b"{}", "m").expect_err("no candidate");
    assert_eq!(empty.class, FailureClass::ServerError);
}

#[test]
fn several_candidates_are_several_choices() {
    let body = json!({"candidates": [
        {"content": {"role": "model", "parts": [{"text": "A"}]}, "finishReason": "STOP", "index": 0},
        {"content": {"role": "model", "parts": [{"text": "B"}]}, "finishReason": "MAX_TOKENS", "index": 1}
    ]});
    let answer = from_generate_content(body.to_string().as_bytes(), "gemini-2.5-flash").expect("reads");
    assert_eq!(answer.model, "gemini-2.5-flash");
    let seen: Vec<_> = answer
        .choices
        .iter()
        .map(|c| (c.index, c.message.content.clone(), c.finish_reason))
        .collect();
    assert_eq!(
        seen,
        [
            (0, Some("A".to_string()), Some(FinishReason::Stop)),
            (1, Some("B".to_string()), Some(FinishReason::Length))
        ]
    );
}

//! Canonical (OpenAI Chat Completions) requests written as Gemini `generateContent` requests.
//! Every field is mapped or refused by name; the conversation itself is in [`super::messages`].

use serde_json::Value;

use super::messages::conversation;
use super::types::{
    FunctionCallingConfig, FunctionDeclaration, GenerateContentRequest, GenerationConfig, ThinkingConfig, Tool,
    ToolConfig,
};
use crate::llm::chat::{self, ChatRequest, ResponseFormat};
use crate::llm::is_neutral;
use crate::llm::{TranslateError, TranslateOptions, Unsupported};

/// The Gemini request for a canonical request, for the upstream model `model`.
pub fn to_generate_content(
    request: &ChatRequest,
    model: &str,
    options: &TranslateOptions,
) -> Result<GenerateContentRequest, TranslateError> {
    let mut unsupported = Unsupported::new(options);
    let mut config = GenerationConfig {
        temperature: request.temperature,
        top_p: request.top_p,
        max_output_tokens: request.max_output_tokens(),
        stop_sequences: request.stop.as_ref().map(chat::Stop::to_vec).filter(|s| !s.is_empty()),
        ..GenerationConfig::default()
    };
    match request.n {
        Some(0) => return Err(TranslateError::new("n", "n must be at least 1")),
        Some(n) if n > 1 => config.candidate_count = Some(n),
        _ => {}
    }
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => config.response_mime_type = Some("application/json".to_string()),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            config.response_mime_type = Some("application/json".to_string());
            config.response_json_schema = json_schema.schema.clone();
        }
    }
    if request.user.as_deref().is_some_and(|u| !u.is_empty()) {
        unsupported.param("user", "Gemini has no end-user identifier")?;
    }
    if let Some(stream_options) = &request.stream_options {
        unsupported.rest("stream_options", &stream_options.rest)?;
    }
    for (key, value) in &request.rest {
        if is_neutral(value) {
            continue;
        }
        match (key.as_str(), value) {
            ("top_k", Value::Number(n)) if n.as_u64().is_some() => config.top_k = n.as_u64(),
            ("seed", Value::Number(n)) if n.as_i64().is_some() => config.seed = n.as_i64(),
            ("presence_penalty", Value::Number(n)) => config.presence_penalty = n.as_f64(),
            ("frequency_penalty", Value::Number(n)) => config.frequency_penalty = n.as_f64(),
            ("reasoning_effort", Value::String(effort)) => {
                config.thinking_config = Some(thinking(model, effort)?);
            }
            ("modalities", Value::Array(m)) if m.iter().all(|m| m == "text") => {}
            _ => unsupported.param(key, why_unsupported(key))?,
        }
    }

    let (tools, strict) = tools(request, &mut unsupported)?;
    let tool_config = tool_config(request, tools.as_deref(), strict)?;
    if request.parallel_tool_calls == Some(false) && tools.is_some() {
        unsupported.param(
            "parallel_tool_calls",
            "Gemini cannot be limited to one tool call per answer",
        )?;
    }
    let (system_instruction, contents) = conversation(&request.messages, &mut unsupported)?;
    if contents.is_empty() {
        return Err(TranslateError::new(
            "messages",
            "Gemini needs at least one user or assistant message besides system messages",
        ));
    }
    let has_config = config != GenerationConfig::default();
    Ok(GenerateContentRequest {
        contents,
        system_instruction,
        tools,
        tool_config,
        generation_config: has_config.then_some(config),
    })
}

fn why_unsupported(key: &str) -> &'static str {
    match key {
        "logit_bias" => "Gemini has no token biasing",
        "logprobs" | "top_logprobs" => "the gateway does not translate Gemini's log probabilities",
        "functions" | "function_call" => "the deprecated functions API is not translated; use tools and tool_choice",
        "audio" | "modalities" => "the gateway translates text answers only",
        "store" | "metadata" => "Gemini does not store completions",
        "service_tier" => "Gemini has no service tiers",
        "prediction" => "Gemini has no predicted outputs",
        "web_search_options" => "the gateway does not translate web search for Gemini",
        "top_k" | "seed" => "it must be a non-negative integer",
        "reasoning_effort" => "it must be one of none, minimal, low, medium or high",
        _ => "the gateway cannot translate it for the Gemini API",
    }
}

/// `reasoning_effort` as Gemini's thinking configuration: a level on Gemini 3 and later, a
/// token budget on Gemini 2.x (the budgets Google's own OpenAI layer uses).
fn thinking(model: &str, effort: &str) -> Result<ThinkingConfig, TranslateError> {
    let id = model.rsplit('/').next().unwrap_or(model);
    let budgets = id.starts_with("gemini-2") || id.starts_with("gemini-1");
    let known = ["none", "minimal", "low", "medium", "high"];
    if !known.contains(&effort) {
        return Err(TranslateError::new(
            "reasoning_effort",
            format!("reasoning_effort '{effort}' is not one of none, minimal, low, medium or high"),
        ));
    }
    Ok(if budgets {
        let budget = match effort {
            "none" => 0,
            "minimal" | "low" => 1024,
            "medium" => 8192,
            _ => 24576,
        };
        ThinkingConfig {
            thinking_budget: Some(budget),
            thinking_level: None,
        }
    } else {
        // Gemini 3 cannot turn thinking off; `minimal` is its nearest level.
        let level = if effort == "none" { "minimal" } else { effort };
        ThinkingConfig {
            thinking_budget: None,
            thinking_level: Some(level.to_string()),
        }
    })
}

/// Function tools as one Gemini tool of declarations; whether any asked for `strict`.
fn tools(
    request: &ChatRequest,
    unsupported: &mut Unsupported<'_>,
) -> Result<(Option<Vec<Tool>>, bool), TranslateError> {
    let Some(tools) = request.tools.as_ref().filter(|t| !t.is_empty()) else {
        return Ok((None, false));
    };
    let mut declarations = Vec::with_capacity(tools.len());
    let mut strict = false;
    for (i, tool) in tools.iter().enumerate() {
        if tool.kind != "function" {
            unsupported.param(&format!("tools[{i}].type"), "Gemini takes function tools only")?;
            continue;
        }
        strict |= tool.function.strict == Some(true);
        declarations.push(FunctionDeclaration {
            name: tool.function.name.clone(),
            description: tool.function.description.clone(),
            parameters_json_schema: tool.function.parameters.clone(),
        });
    }
    if declarations.is_empty() {
        return Ok((None, false));
    }
    Ok((
        Some(vec![Tool {
            function_declarations: declarations,
        }]),
        strict,
    ))
}

/// `tool_choice` as Gemini's function calling mode. `strict` function tools make the
/// automatic mode `VALIDATED` (calls checked against the schema), as `ANY` always is.
fn tool_config(
    request: &ChatRequest,
    tools: Option<&[Tool]>,
    strict: bool,
) -> Result<Option<ToolConfig>, TranslateError> {
    let config = |mode: &str, names: Option<Vec<String>>| {
        Some(ToolConfig {
            function_calling_config: FunctionCallingConfig {
                mode: mode.to_string(),
                allowed_function_names: names,
            },
        })
    };
    let automatic = if strict { "VALIDATED" } else { "AUTO" };
    let Some(tools) = tools else {
        return match &request.tool_choice {
            Some(chat::ToolChoice::Named(_)) => Err(TranslateError::new(
                "tool_choice",
                "tool_choice names a function, but the request defines no tools",
            )),
            Some(chat::ToolChoice::Mode(mode)) if mode == "required" => Err(TranslateError::new(
                "tool_choice",
                "tool_choice asks for a tool call, but the request defines no tools",
            )),
            _ => Ok(None),
        };
    };
    match &request.tool_choice {
        None => Ok(strict.then(|| config(automatic, None)).flatten()),
        Some(chat::ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => Ok(config(automatic, None)),
            "none" => Ok(config("NONE", None)),
            "required" => Ok(config("ANY", None)),
            other => Err(TranslateError::new(
                "tool_choice",
                format!("tool_choice '{other}' is not one of none, auto, required or a named function"),
            )),
        },
        Some(chat::ToolChoice::Named(named)) => {
            let name = &named.function.name;
            let declared = tools
                .iter()
                .flat_map(|t| &t.function_declarations)
                .any(|d| &d.name == name);
            if !declared {
                return Err(TranslateError::new(
                    "tool_choice",
                    format!("tool_choice names the function '{name}', which is not among the request's tools"),
                ));
            }
            Ok(config("ANY", Some(vec![name.clone()])))
        }
    }
}

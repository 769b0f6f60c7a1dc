//! A masked request is the client's bytes with each masked string written again, and reads as
//! the same value as the whole body written again (the way before): checked on generated chat
//! requests written with every escape JSON has (`\u00e9`, surrogate pairs, `\"`, `\/`),
//! multi-byte text, masks over escapes (in texts and in tool calls' JSON arguments), spacing
//! between every token, members in any order, numbers written oddly.

use bytes::Bytes;

use super::{splice, splice_raw, Masked};
use serde_json::Value;

use super::super::matcher::{Finding, Form, Matcher};
use super::super::surface::surface;
use super::super::tests::guard;
use super::super::{check_request, strict, GuardMetrics};
use crate::crd::MessageRole;
use crate::gateway::metrics::Endpoint;

const SPEC: &str = r#"{content: [
  {name: pii, builtin: [email, creditCard, phone, ipAddress], action: mask, roles: [user, assistant, tool]},
  {name: secrets, keywords: [nightjar], action: block, roles: [user, tool]}
]}"#;

const PIECES: [&str; 24] = [
    " ",
    " ",
    "jane@example.com",
    "x.y@mail.example.org",
    "fe80::1",
    "10.0.0.1",
    "(415) 555-2671",
    "4111 1111 1111 1111",
    "std::collections::HashMap",
    "d::c",
    "é",
    "日本",
    "😀",
    "\"",
    "\\",
    "/",
    "\n",
    "\t",
    "\u{1}",
    "\u{2028}",
    "word",
    "@",
    ".",
    "nightjar",
];

fn text(rng: &mut fastrand::Rng) -> String {
    let mut text = String::new();
    for _ in 0..rng.usize(0..12) {
        let piece = PIECES[rng.usize(..PIECES.len())];
        // The blocking keyword rarely, so most requests go through.
        if piece == "nightjar" && rng.usize(..8) != 0 {
            continue;
        }
        text.push_str(piece);
    }
    text
}

/// `text` as a JSON string, each character written as itself or escaped, at random.
fn quoted(rng: &mut fastrand::Rng, text: &str) -> String {
    quoted_map(rng, text).0
}

/// [`quoted`], and where each character of `text` starts in it (by its offset in `text`;
/// `text.len()`: where the closing quote is).
fn quoted_map(rng: &mut fastrand::Rng, text: &str) -> (String, Vec<usize>) {
    let mut map = vec![0; text.len() + 1];
    let mut out = String::from("\"");
    let hex = |rng: &mut fastrand::Rng, unit: u32| match rng.bool() {
        true => format!("\\u{unit:04x}"),
        false => format!("\\u{unit:04X}"),
    };
    for (i, c) in text.char_indices() {
        map[i] = out.len();
        let escape = rng.usize(..4) == 0;
        match c {
            '"' if escape => out.push_str(&hex(rng, 0x22)),
            '"' => out.push_str("\\\""),
            '\\' if escape => out.push_str(&hex(rng, 0x5c)),
            '\\' => out.push_str("\\\\"),
            '/' if escape => out.push_str("\\/"),
            '\n' if escape => out.push_str(&hex(rng, 0x0a)),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&hex(rng, c as u32)),
            c if escape => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&hex(rng, u32::from(*unit)));
                }
            }
            c => out.push(c),
        }
    }
    map[text.len()] = out.len();
    out.push('"');
    (out, map)
}

/// Writes one value of a generated request.
type Writer<'a> = Box<dyn FnMut(&mut Request, &mut fastrand::Rng) + 'a>;

/// A scanned string: where it is in the body, what it decodes to and where each of its
/// characters starts in the body, its role and form.
struct Scanned {
    start: usize,
    text: String,
    map: Vec<usize>,
    role: MessageRole,
    form: Form,
}

/// One generated request: its bytes, and each scanned string's span there, what it decodes
/// to, its role and form.
#[derive(Default)]
struct Request {
    body: String,
    strings: Vec<Scanned>,
}

impl Request {
    fn space(&mut self, rng: &mut fastrand::Rng) {
        self.body.push_str(["", "", " ", "\n  ", "\t", "\r\n"][rng.usize(..6)]);
    }

    /// A scanned string: `text` as given, else generated.
    fn scanned(&mut self, rng: &mut fastrand::Rng, text: Option<String>, role: MessageRole, form: Form) {
        let text = text.unwrap_or_else(|| self::text(rng));
        let start = self.body.len();
        let (quoted, map) = quoted_map(rng, &text);
        self.body.push_str(&quoted);
        let map = map.into_iter().map(|at| start + at).collect();
        self.strings.push(Scanned {
            start,
            text,
            map,
            role,
            form,
        });
    }

    /// `"name":` and a value written by `value`, with spacing.
    fn member(&mut self, rng: &mut fastrand::Rng, name: &str, value: &mut dyn FnMut(&mut Request, &mut fastrand::Rng)) {
        self.space(rng);
        let name = quoted(rng, name);
        self.body.push_str(&name);
        self.space(rng);
        self.body.push(':');
        self.space(rng);
        value(self, rng);
        self.space(rng);
    }

    fn object(&mut self, rng: &mut fastrand::Rng, members: &mut [(&str, Writer<'_>)]) {
        rng.shuffle(members);
        self.body.push('{');
        for (i, (name, value)) in members.iter_mut().enumerate() {
            if i > 0 {
                self.body.push(',');
            }
            self.member(rng, name, value.as_mut());
        }
        self.body.push('}');
    }

    fn message(&mut self, rng: &mut fastrand::Rng) {
        let (name, role) = [
            ("user", MessageRole::User),
            ("assistant", MessageRole::Assistant),
            ("tool", MessageRole::Tool),
            ("system", MessageRole::System),
        ][rng.usize(..4)];
        let parts = rng.bool();
        let calls = role == MessageRole::Assistant && rng.bool();
        let mut members: Vec<(&str, Writer)> = vec![
            ("role", Box::new(move |r, rng| r.body.push_str(&quoted(rng, name)))),
            (
                "content",
                Box::new(move |r, rng| match parts {
                    false => r.scanned(rng, None, role, Form::Plain),
                    true => {
                        r.body.push('[');
                        for i in 0..rng.usize(0..3) {
                            if i > 0 {
                                r.body.push(',');
                            }
                            r.object(
                                rng,
                                &mut [
                                    ("type", Box::new(|r, rng| r.body.push_str(&quoted(rng, "text")))),
                                    ("text", Box::new(move |r, rng| r.scanned(rng, None, role, Form::Plain))),
                                ],
                            );
                        }
                        r.body.push(']');
                    }
                }),
            ),
        ];
        if calls {
            members.push((
                "tool_calls",
                Box::new(move |r, rng| {
                    r.body.push('[');
                    r.object(
                        rng,
                        &mut [
                            ("id", Box::new(|r, rng| r.body.push_str(&quoted(rng, "call_1")))),
                            (
                                "function",
                                Box::new(move |r, rng| {
                                    // JSON source inside a string: its own escapes, then escaped again.
                                    let to = text(rng);
                                    let arguments = format!("{{\"to\": {}, \"n\": 1}}", quoted(rng, &to));
                                    r.object(
                                        rng,
                                        &mut [
                                            ("name", Box::new(|r, rng| r.body.push_str(&quoted(rng, "send")))),
                                            (
                                                "arguments",
                                                Box::new(move |r, rng| {
                                                    r.scanned(rng, Some(arguments.clone()), role, Form::Json)
                                                }),
                                            ),
                                        ],
                                    );
                                }),
                            ),
                        ],
                    );
                    r.body.push(']');
                }),
            ));
        }
        self.object(rng, &mut members);
    }

    fn generate(rng: &mut fastrand::Rng) -> Request {
        let mut r = Request::default();
        r.space(rng);
        let numbers = ["0.5", "1e0", "-0", "10.0E-1", "12345678901234567890123", "7"];
        let number = numbers[rng.usize(..numbers.len())];
        r.object(
            rng,
            &mut [
                ("model", Box::new(|r, rng| r.body.push_str(&quoted(rng, "chat")))),
                ("temperature", Box::new(move |r, _| r.body.push_str(number))),
                (
                    "stream",
                    Box::new(|r, rng| r.body.push_str(["true", "false", "null"][rng.usize(..3)])),
                ),
                (
                    "metadata",
                    Box::new(|r, rng| {
                        r.object(
                            rng,
                            &mut [
                                (
                                    "note",
                                    Box::new(|r, rng| {
                                        let note = text(rng);
                                        r.body.push_str(&quoted(rng, &note))
                                    }),
                                ),
                                ("list", Box::new(|r, _| r.body.push_str("[1, [], {}, [true]]"))),
                            ],
                        )
                    }),
                ),
                (
                    "messages",
                    Box::new(|r, rng| {
                        r.body.push('[');
                        for i in 0..rng.usize(0..5) {
                            if i > 0 {
                                r.body.push(',');
                            }
                            r.space(rng);
                            r.message(rng);
                            r.space(rng);
                        }
                        r.body.push(']');
                    }),
                ),
            ],
        );
        r.space(rng);
        r
    }
}

/// The body as the guard wrote it before: parsed, masked, written whole.
fn written_whole(matcher: &Matcher, body: &[u8]) -> Option<Value> {
    let mut value = strict::from_slice(body).ok()?;
    let (mut findings, mut masked, mut blocked): (Vec<Finding>, Vec<u16>, Option<u16>) = Default::default();
    surface(Endpoint::chat_completions).request_texts(&mut value, &mut |role, text, form| {
        if blocked.is_none() && matcher.scans(role) {
            blocked = matcher.apply(text, Some(role), form, &mut findings, &mut masked);
        }
    });
    let whole = serde_json::to_vec(&value).ok()?;
    (blocked.is_none() && !masked.is_empty()).then(|| serde_json::from_slice(&whole).expect("json"))
}

#[tokio::test]
async fn masked_strings_are_spliced_into_the_bytes_the_client_sent() {
    let g = guard(SPEC);
    let matcher = g.request.as_ref().expect("request rules");
    let metrics = GuardMetrics::unregistered();
    let mut rng = fastrand::Rng::with_seed(8);
    let (mut masked_requests, mut blocked_requests, mut masked_json) = (0, 0, 0);
    for _ in 0..3000 {
        let request = Request::generate(&mut rng);
        let body = Bytes::from(request.body.clone());
        // The expected bytes: the client's, with each match in a string the rules changed
        // replaced by its placeholder (over the escapes it was written with).
        let mut expected = String::new();
        let mut at = 0;
        let (mut findings, mut masked, mut blocked) = (Vec::new(), Vec::new(), None);
        for scanned in &request.strings {
            let mut text = scanned.text.clone();
            if blocked.is_some() || !matcher.scans(scanned.role) {
                continue;
            }
            let before = masked.len();
            blocked = matcher.apply(&mut text, Some(scanned.role), scanned.form, &mut findings, &mut masked);
            if masked.len() > before {
                expected.push_str(&request.body[at..scanned.start]);
                expected.push('"');
                let mut from = 0;
                for f in &findings {
                    expected.push_str(&request.body[scanned.map[from]..scanned.map[f.start]]);
                    expected.push_str(matcher.placeholder(f));
                    from = f.end;
                }
                expected.push_str(&request.body[scanned.map[from]..scanned.map[scanned.text.len()]]);
                at = scanned.map[scanned.text.len()];
                masked_json += usize::from(scanned.form == Form::Json);
            }
        }
        expected.push_str(&request.body[at..]);
        let out = check_request(Some(&g), Endpoint::chat_completions, &body, &metrics).await;
        let context = &request.body;
        match (blocked, out) {
            (Some(_), Err(error)) => {
                assert_eq!(error.code, Some("content_policy_violation"), "{context}");
                blocked_requests += 1;
            }
            (None, Ok(None)) => assert!(masked.is_empty(), "{context}"),
            (None, Ok(Some(out))) => {
                assert!(!masked.is_empty(), "{context}");
                assert_eq!(std::str::from_utf8(&out).expect("utf-8"), expected, "{context}");
                let read: Value = serde_json::from_slice(&out).expect("json");
                assert_eq!(Some(read), written_whole(matcher, &body), "{context}");
                masked_requests += 1;
            }
            (blocked, out) => panic!("{context}: expected {blocked:?}, got {:?}", out.map_err(|e| e.message)),
        }
    }
    assert!(
        masked_requests > 1000 && blocked_requests > 20 && masked_json > 100,
        "{masked_requests} masked ({masked_json} tool arguments), {blocked_requests} blocked"
    );
}

#[tokio::test]
async fn a_repeated_name_is_refused_before_anything_is_masked_or_spliced() {
    let g = guard(SPEC);
    let metrics = GuardMetrics::unregistered();
    for body in [
        r#"{"messages":[{"role":"user","content":"jane@example.com","content":"clean"}]}"#,
        r#"{"messages":[{"role":"user","content":"jane@example.com"}],"m\u0065ssages":[]}"#,
    ] {
        let error = check_request(Some(&g), Endpoint::chat_completions, &Bytes::from(body), &metrics)
            .await
            .expect_err(body);
        assert_eq!(error.code, Some("invalid_json"), "{body}");
        assert!(error.message.contains("appears twice"), "{}", error.message);
    }
}

#[test]
fn a_body_that_does_not_walk_beside_its_value_is_left_to_the_caller() {
    let value: Value = serde_json::from_str(r#"{"a":["x"]}"#).expect("json");
    let Some(Value::String(x)) = value.pointer("/a/0") else {
        panic!("a string")
    };
    let address_of_string = std::ptr::from_ref(x) as usize;
    let masked = |found| {
        [Masked {
            address: address_of_string,
            found,
        }]
    };
    assert_eq!(
        splice(br#"{"a":["x"]}"#, &value, &masked(vec![])).as_deref(),
        Some(&br#"{"a":["x"]}"#[..])
    );
    // Matches that are not where the text says: the text now, escaped whole.
    assert_eq!(
        splice(br#"{"a":[ "\u0078"]}"#, &value, &masked(vec![(0, 1, "[X]")])).as_deref(),
        Some(&br#"{"a":[ "x"]}"#[..])
    );
    for other in [
        &br#"{"a":["x","y"]}"#[..],
        br#"{"b":["x"]}"#,
        br#"{"a":[]}"#,
        br#"{"a":["x"]} 1"#,
        br#"{"a":"x"}"#,
    ] {
        assert_eq!(
            splice(other, &value, &masked(vec![])),
            None,
            "{}",
            String::from_utf8_lossy(other)
        );
    }
}

#[test]
fn values_given_raw_replace_their_source_and_what_it_holds() {
    let body = br#"{ "n" : 1.0, "t":"a\u0062c", "o": {"n": 1, "t": "x"} }"#;
    let mut value = strict::from_slice(body).expect("json");
    // The texts as masked (by the matches below).
    value["t"] = Value::from("a[B]c");
    value["o"]["t"] = Value::from("[X]");
    let address = |pointer: &str| value.pointer(pointer).map(|v| std::ptr::from_ref(v) as usize);
    let string = |pointer: &str| match value.pointer(pointer) {
        Some(Value::String(s)) => std::ptr::from_ref(s) as usize,
        _ => 0,
    };
    let (n, o) = (address("/n").expect("n"), address("/o").expect("o"));
    assert_eq!(
        splice_raw(body, &value, &[], &[(n, b"7")]).as_deref(),
        Some(&br#"{ "n" : 7, "t":"a\u0062c", "o": {"n": 1, "t": "x"} }"#[..]),
        "only the top-level number"
    );
    // A masked string inside a value given raw: the raw value alone.
    let inner = Masked {
        address: string("/o/t"),
        found: vec![(0, 1, "[X]")],
    };
    let outer = Masked {
        address: string("/t"),
        found: vec![(1, 2, "[B]")],
    };
    assert_eq!(
        splice_raw(body, &value, &[inner, outer], &[(o, b"{}"), (n, b"2")]).as_deref(),
        Some(&br#"{ "n" : 2, "t":"a[B]c", "o": {} }"#[..])
    );
    // Not the body the value was parsed from: the caller writes the value whole.
    assert_eq!(splice_raw(br#"{"n":1,"m":2}"#, &value, &[], &[(n, b"2")]), None);
}

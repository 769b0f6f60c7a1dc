use super::*;

pub(crate) fn rules(yaml: &str) -> Vec<ContentRule> {
    serde_yaml_ng::from_str(yaml).expect("rules")
}

pub(crate) fn matcher(yaml: &str, direction: Direction) -> Matcher {
    Matcher::compile(&rules(yaml), direction)
        .expect("compile")
        .expect("rules apply")
}

fn masked(m: &Matcher, text: &str, role: Option<MessageRole>) -> String {
    let mut found = Vec::new();
    m.find(text, 0, role, &mut found);
    m.mask(text, &found)
}

const PII: &str = r#"
- name: pii
  builtin: [email, creditCard, usSSN, phone, ipAddress, iban]
  action: mask
- name: codename
  patterns: ["(?i)project\\s+falcon"]
  keywords: [bluebird, "red team"]
  action: mask
"#;

#[test]
fn masks_each_match_with_a_typed_placeholder() {
    let m = matcher(PII, Direction::Request);
    let user = Some(MessageRole::User);
    assert_eq!(
        masked(
            &m,
            "mail jane@example.com, card 4111 1111 1111 1111, ssn 123-45-6789",
            user
        ),
        "mail [EMAIL], card [CREDIT_CARD], ssn [US_SSN]"
    );
    assert_eq!(
        masked(&m, "Project  Falcon and BlueBird meet the Red Team", user),
        "[REDACTED:codename] and [REDACTED:codename] meet the [REDACTED:codename]"
    );
    assert_eq!(
        masked(&m, "from 10.1.2.3 call (415) 555-2671", user),
        "from [IP_ADDRESS] call [PHONE]"
    );
}

#[test]
fn ordinary_text_is_left_alone() {
    let m = matcher(PII, Direction::Request);
    let text = "Release 2.4.1 ships on 2024-05-17 at 10:30; see std::collections::HashMap, \
                order #1234567812345670, bluebirds and falconry, +5 points, logo@2x.png.";
    assert_eq!(masked(&m, text, Some(MessageRole::User)), text);
}

#[test]
fn keywords_match_whole_words_case_insensitively() {
    let m = matcher(
        "[{name: k, keywords: [falcon, \"ß-key\"], action: mask}]",
        Direction::Request,
    );
    let user = Some(MessageRole::User);
    assert_eq!(
        masked(&m, "FALCON, falcon. falcons xfalcon", user),
        "[REDACTED:k], [REDACTED:k]. falcons xfalcon"
    );
    assert_eq!(masked(&m, "the ß-key!", user), "the [REDACTED:k]!");
}

#[test]
fn roles_scope_request_rules() {
    let m = matcher(PII, Direction::Request);
    let text = "reach me at jane@example.com";
    assert_eq!(
        masked(&m, text, Some(MessageRole::System)),
        text,
        "system prompts are not scanned by default"
    );
    assert_eq!(masked(&m, text, Some(MessageRole::Tool)), "reach me at [EMAIL]");
    let m = matcher(
        "[{name: s, builtin: [email], roles: [system], action: mask}]",
        Direction::Request,
    );
    assert_eq!(masked(&m, text, Some(MessageRole::User)), text);
    assert_eq!(masked(&m, text, Some(MessageRole::System)), "reach me at [EMAIL]");
    assert!(m.scans(MessageRole::System) && !m.scans(MessageRole::User));
}

#[test]
fn a_blocking_rule_wins_over_a_masking_one() {
    let yaml = r#"
- {name: pii, builtin: [email], action: mask}
- {name: corp, patterns: ["[a-z]+@corp\\.example\\.com"], action: block}
"#;
    let m = matcher(yaml, Direction::Request);
    let mut found = Vec::new();
    m.find("send to bob@corp.example.com", 0, Some(MessageRole::User), &mut found);
    let block = m.blocking(&found).expect("blocked");
    assert_eq!(&*m.rules[usize::from(block.rule)].name, "corp");
}

#[test]
fn rules_apply_in_their_directions() {
    let yaml = r#"
- {name: in, keywords: [alpha]}
- {name: out, keywords: [beta], "on": [response]}
- {name: both, keywords: [gamma], "true": [both]}
"#;
    let request = matcher(yaml, Direction::Request);
    let response = matcher(yaml, Direction::Response);
    let names = |m: &Matcher| m.rules.iter().map(|r| r.name.to_string()).collect::<Vec<_>>();
    assert_eq!(names(&request), ["in", "both"]);
    assert_eq!(names(&response), ["out", "both"]);
    assert!(
        Matcher::compile(&rules("[{name: x, keywords: [a]}]"), Direction::Response)
            .expect("compile")
            .is_none()
    );
}

#[test]
fn the_window_covers_the_longest_match() {
    let m = matcher(
        "[{name: k, keywords: [falcon], \"on\": [response]}]",
        Direction::Response,
    );
    assert_eq!(m.window, 6 + LOOKAHEAD);
    let m = matcher(
        "[{name: p, patterns: [\"a.*b\"], \"on\": [response]}]",
        Direction::Response,
    );
    assert_eq!(m.window, WINDOW_CAP + LOOKAHEAD);
}

#[test]
fn a_flood_of_matches_stays_linear() {
    let m = matcher("[{name: k, keywords: [x], action: mask}]", Direction::Request);
    let text = "x ".repeat(200_000);
    // Quadratic overlap handling would not finish.
    let out = masked(&m, &text, Some(MessageRole::User));
    assert_eq!(out.matches("[REDACTED:k]").count(), 200_000);
}

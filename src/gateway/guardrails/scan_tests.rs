//! The matcher finds exactly what it found with one overlapping `RegexSet` pass and a
//! search per entry the set reported (kept here as the oracle), on generated texts dense in
//! near-matches: digits and separators, `@`, `::`, key prefixes, keywords, multi-byte
//! characters, scans from offsets past 0, every role, both directions.

use regex::RegexSet;

use super::tests::matcher;
use super::*;

/// The matcher as it was: which entries match, from one `RegexSet` pass; then each of those
/// entries' own search.
fn oracle(m: &Matcher, set: &RegexSet, text: &str, from: usize, role: Option<MessageRole>) -> Vec<Finding> {
    let mut out = Vec::new();
    let applies = |rule: u16| {
        role.is_none_or(|role| {
            m.rules
                .get(usize::from(rule))
                .is_some_and(|r| r.roles & role_bit(role) != 0)
        })
    };
    let decide = |rules: &[u16]| -> Option<u16> {
        let mut applicable = rules.iter().copied().filter(|r| applies(*r));
        let first = applicable.clone().next()?;
        Some(
            applicable
                .find(|r| m.rules[usize::from(*r)].action == GuardAction::Block)
                .unwrap_or(first),
        )
    };
    for index in set.matches_at(text, from).iter() {
        let entry = &m.entries[index];
        let Some(rule) = decide(&entry.rules) else { continue };
        let mut at = from;
        while let Some(found) = entry.regex.find_at(text, at) {
            at = if found.end() > found.start() {
                found.end()
            } else {
                next_boundary(text, found.end())
            };
            if found.start() == found.end() {
                if at > text.len() {
                    break;
                }
                continue;
            }
            let placeholder = match &entry.source {
                Source::Builtin { placeholder, check } => {
                    if !check(text, found.start(), found.end()) {
                        continue;
                    }
                    Some(*placeholder)
                }
                Source::Pattern => None,
            };
            out.push(Finding {
                start: found.start(),
                end: found.end(),
                rule,
                placeholder,
            });
        }
    }
    if let Some(keywords) = &m.keywords {
        keywords.each(text, from, &mut |start, end, keyword| {
            let rule = m.keyword_rules[keyword];
            if applies(rule) && whole_word(text, start, end) {
                out.push(Finding {
                    start,
                    end,
                    rule,
                    placeholder: None,
                });
            }
        });
    }
    resolve(out, &m.rules)
}

/// Every builtin, a pattern with a literal and keywords, as the bench has them.
const BENCH: &str = r#"
- name: pii
  builtin: [email, creditCard, usSSN, phone, ipAddress, iban]
  action: mask
  "on": [both]
- name: secrets
  builtin: [awsAccessKey, privateKey, openaiKey, githubToken]
  patterns: ["(?i)project\\s+falcon"]
  keywords: [bluebird, nightjar, "red team"]
  action: block
  "on": [both]
"#;

/// The grouped built-ins in several rules (overlapping each other), patterns overlapping
/// them, one that matches the empty string, a built-in shared by a masking and a blocking
/// rule, and rules of other roles.
const MIXED: &str = r#"
- name: numbers
  builtin: [phone, creditCard]
  patterns: ['\d{3}[ -]\d{2}', '[0-9a-f]{2}:[0-9a-f]', 'x*', '(?i)[a-z]{2}\d']
  action: mask
  roles: [user, system]
  "on": [both]
- name: strict
  builtin: [ipAddress, usSSN, creditCard, email]
  patterns: ['\b\d{4}\b', 'ka[a-z]@']
  keywords: [team]
  action: block
  roles: [tool, assistant]
  "on": [both]
- name: accounts
  builtin: [iban, githubToken]
  action: mask
  "on": [request]
"#;

const PIECES: [&str; 56] = [
    " ",
    " ",
    " ",
    "-",
    ".",
    ":",
    "::",
    "/",
    ",",
    "(",
    ")",
    "+",
    "@",
    "_",
    "\n",
    "\t",
    "jane.doe",
    "example.com",
    "x@y.io",
    "icon@2x.png",
    "AKIA",
    "ASIA",
    "ABCDEFGHIJKLMNOP",
    "Z7Q2",
    "sk-",
    "sk-proj-",
    "T3BlbkFJ",
    "ghp_",
    "github_pat_",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----",
    "project falcon",
    "Project\tFalcon",
    "bluebird",
    "NightJar",
    "red team",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "4111 1111 1111 1111",
    "4111111111111111",
    "123-45-6789",
    "(415) 555-2671",
    "+44 20 7946 0958",
    "10.0.0.1",
    "fe80::1",
    "2001:db8::ff00:42:8329",
    "std::collections",
    "::ffff:10.0.0.1",
    "é",
    "日本",
    "😀",
    "abcdef",
    "ABCDEF",
    "kax",
    "2024-05-17",
    "v1.2.3.4",
];

/// Code dense in `::` (paths, IPv6-looking spans the IP detector's check rejects) and real
/// IPv6 and IPv4 addresses beside and inside them.
const CODE: [&str; 24] = [
    "std::collections::HashMap",
    "d::c",
    "a::b::c",
    "::",
    ":::",
    "::1",
    "1::",
    "fe80::1",
    "ab::cd:ef",
    "0:0:0:0:0:0:0:1",
    "1:2:3:4:5:6:7:8:9",
    "::ffff:10.0.0.1",
    "ab::a.10.0.0.1",
    "Vec::<u8>::new()",
    "self::x",
    "crate::a::B",
    "10.0.0.1",
    "_::f",
    "::f.1.2.3",
    "2001:db8::",
    "(415) 555-2671",
    "4111111111111111",
    "dead:beef::",
    "AB12::",
];

/// A line of code: `CODE` pieces joined by what code puts between them.
fn code(rng: &mut fastrand::Rng) -> String {
    let mut text = String::new();
    for _ in 0..rng.usize(1..30) {
        text.push_str(CODE[rng.usize(..CODE.len())]);
        text.push_str([" ", "", "(", ");", ", ", ".", ":", "\n", "é", "_"][rng.usize(..10)]);
    }
    text
}

fn text(rng: &mut fastrand::Rng) -> String {
    if rng.usize(..4) == 0 {
        return code(rng);
    }
    let mut text = String::new();
    // One text in eight is long and dense in matches (the group then searches each pattern
    // alone from where it is).
    let pieces = if rng.usize(..8) == 0 {
        rng.usize(100..600)
    } else {
        rng.usize(0..40)
    };
    for _ in 0..pieces {
        match rng.usize(..4) {
            0 => (0..rng.usize(1..20)).for_each(|_| text.push(rng.char('0'..='9'))),
            1 => (0..rng.usize(1..6)).for_each(|_| {
                text.push(
                    rng.choice(b"0123456789abcdefABCDEF:.-".iter())
                        .map_or('0', |b| char::from(*b)),
                )
            }),
            _ => text.push_str(PIECES[rng.usize(..PIECES.len())]),
        }
        if rng.bool() {
            text.push(' ');
        }
    }
    text
}

const ROLES: [Option<MessageRole>; 6] = [
    None,
    Some(MessageRole::System),
    Some(MessageRole::Developer),
    Some(MessageRole::User),
    Some(MessageRole::Assistant),
    Some(MessageRole::Tool),
];

#[test]
fn finds_what_the_set_pass_found() {
    let mut rng = fastrand::Rng::with_seed(12);
    for yaml in [BENCH, MIXED] {
        for direction in [Direction::Request, Direction::Response] {
            let m = matcher(yaml, direction);
            let set = RegexSet::new(m.entries.iter().map(|e| e.regex.as_str())).expect("set");
            let mut found = Vec::new();
            let mut findings = 0;
            for _ in 0..5000 {
                let text = text(&mut rng);
                let mut from = rng.usize(..=text.len());
                while !text.is_char_boundary(from) {
                    from -= 1;
                }
                let role = ROLES[rng.usize(..ROLES.len())];
                found.clear();
                m.find(&text, from, role, &mut found);
                assert_eq!(
                    found,
                    oracle(&m, &set, &text, from, role),
                    "{text:?} from {from}, {role:?}"
                );
                findings += found.len();
            }
            // The texts do hold findings (the comparison is not of empty lists).
            assert!(findings > 1000, "{findings} findings");
        }
    }
}

#[test]
fn only_builtins_without_a_literal_are_grouped() {
    let m = matcher(&format!("{MIXED}{BENCH}"), Direction::Request);
    let grouped: Vec<&str> = m.grouped.iter().map(|i| m.entries[*i].regex.as_str()).collect();
    assert_eq!(grouped.len(), 5, "{grouped:?}");
    for digits in [
        "25[0-5]",
        r"\d{3}-\d{2}-\d{4}",
        r"\d{13,19}",
        r"[A-Z]{2}\d{2}",
        r"\(\d{3}\)",
    ] {
        assert!(grouped.iter().any(|p| p.contains(digits)), "{digits} in {grouped:?}");
    }
    for entry in m.entries.iter().filter(|e| e.alone) {
        assert!(
            matches!(entry.source, Source::Pattern)
                || ["@", "AKIA", "-----BEGIN", "sk-", "gh[pousr]_"]
                    .iter()
                    .any(|l| entry.regex.as_str().contains(l)),
            "{}",
            entry.regex.as_str()
        );
    }
}

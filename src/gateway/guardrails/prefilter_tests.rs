use super::super::matcher::tests::matcher;
use super::super::matcher::{Finding, Matcher};
use crate::crd::{Direction, MessageRole};

const ALL: &str = r#"
- name: pii
  builtin: [email, creditCard, usSSN, phone, ipAddress, iban]
  action: mask
  "on": [both]
- name: secrets
  builtin: [awsAccessKey, privateKey, openaiKey, githubToken]
  patterns: ["(?i)project\\s+falcon"]
  keywords: [bluebird]
  action: block
  "on": [both]
"#;

/// Real matches of every built-in, to plant in generated text.
const PLANTED: [&str; 16] = [
    "jane.doe@example.com",
    "4111 1111 1111 1111",
    "4111111111111111",
    "378282246310005",
    "123-45-6789",
    "(415) 555-2671",
    "415-555-2671",
    "+44 20 7946 0958",
    "10.1.2.3",
    "2001:db8::8a2e:370:7334",
    "GB82 WEST 1234 5698 7654 32",
    "AKIAIOSFODNN7EXAMPLE",
    "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
    "sk-proj-abcdefghijklmnopqrstT3BlbkFJabcdefghijklmnopqrst",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "project  falcon",
];

/// Glue between planted matches: the bytes the triggers and checks look at.
const GLUE: [&str; 22] = [
    " ", "  ", ".", "-", ":", "::", "+", "@", "(", ")", "1", "12", "2024", "99999", "a", "Zq", "GB", "é", "\n", "_",
    "/", "x.y",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn generate(rng: &mut Rng) -> String {
    let mut text = String::new();
    for _ in 0..rng.next(40) {
        match rng.next(4) {
            0 => text.push_str(PLANTED[rng.next(PLANTED.len())]),
            _ => text.push_str(GLUE[rng.next(GLUE.len())]),
        }
    }
    text
}

fn both(m: &Matcher, text: &str, from: usize, role: Option<MessageRole>) -> (Vec<Finding>, Vec<Finding>) {
    let (mut filtered, mut whole) = (Vec::new(), Vec::new());
    m.find_in(text, from, role, true, &mut filtered);
    m.find_in(text, from, role, false, &mut whole);
    (filtered, whole)
}

#[test]
fn the_prefilter_never_changes_what_is_found() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut planted = 0;
    for direction in [Direction::Request, Direction::Response] {
        let m = matcher(ALL, direction);
        for _ in 0..4000 {
            let text = generate(&mut rng);
            let mut from = rng.next(text.len() + 1);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            for from in [0, from] {
                let (filtered, whole) = both(&m, &text, from, None);
                assert_eq!(filtered, whole, "text {text:?} from {from}");
                planted += whole.len();
            }
        }
    }
    // The generated texts do hold matches (the comparison is not of empty lists).
    assert!(planted > 10_000, "{planted} findings");
}

#[test]
fn matches_at_region_borders_are_found() {
    let m = matcher(ALL, Direction::Request);
    let user = Some(MessageRole::User);
    let long_run = "1".repeat(300);
    let texts = [
        // At the very start and the very end of the text.
        "4111111111111111".to_string(),
        "x 123-45-6789".to_string(),
        // A trigger far from another, each at the edge of its region.
        format!("jane@example.com{}bob@example.org", " ".repeat(148)),
        // A digit run longer than any match beside a card.
        format!("{long_run} 4111 1111 1111 1111 {long_run}"),
        // Candidates sharing one run of digits and separators.
        "10.1.2.3.4111111111111111 415-555-2671 10.1.2.3".to_string(),
        // Multi-byte text around the regions' edges.
        format!("{}é4111111111111111é{}", "é".repeat(100), "é".repeat(100)),
    ];
    for text in &texts {
        let (filtered, whole) = both(&m, text, 0, user);
        assert!(!whole.is_empty(), "{text}");
        assert_eq!(filtered, whole, "{text}");
    }
    // A digit run that starts before `from` (a streamed window's context).
    let text = "see 4111111111111111";
    for from in 0..text.len() {
        let (filtered, whole) = both(&m, text, from, user);
        assert_eq!(filtered, whole, "from {from}");
    }
}

//! The built-in detectors: a bounded regular expression that finds candidates in one linear
//! pass (alone, or in the matcher's group of patterns without a literal), and a check that
//! keeps only real ones (Luhn for cards, mod-97 for IBANs, the address parser for IPv6,
//! number plans for SSNs and phones).
//! The checks are what keep ordinary text (dates, versions, order numbers, `std::vec`) from
//! being flagged.

use crate::crd::BuiltinDetector;

/// Whether the candidate at `start..end` of `text` is a real one.
pub type Check = fn(&str, usize, usize) -> bool;

/// What a detector needs: its pattern, its placeholder, and the check of a candidate.
pub struct Detector {
    pub pattern: String,
    /// Replaces a masked match.
    pub placeholder: &'static str,
    pub check: Check,
    /// Literals every match contains one of (a prefix, or an address's `@`); none for the
    /// digit-led ones. A detector with some skips to them in its own search: it is searched
    /// alone, not in the matcher's group of patterns without one, and text holding none of
    /// them is not searched at all.
    pub required: &'static [&'static str],
    /// How far after a match's start its required literal may begin, plus the literal's
    /// length but one: text holding none of them can only end inside a match that started
    /// this far before its end ([`Gate`](super::gate::Gate)).
    pub lead: usize,
}

/// ASCII word boundaries (`(?-u:\b)`) keep the lazy DFA on every input.
const B: &str = r"(?-u:\b)";
/// Not at an ASCII word boundary.
const NB: &str = r"(?-u:\B)";

/// The detector of a builtin. `response`: the form used on streamed responses, where a match
/// must fit the hold-back window (a private key's header, not its whole block).
pub fn detector(builtin: BuiltinDetector, response: bool) -> Detector {
    use BuiltinDetector::{AwsAccessKey, Email, GithubToken, OpenaiKey, PrivateKey};
    let required: &[&str] = match builtin {
        Email => &["@"],
        AwsAccessKey => &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        PrivateKey => &["-----BEGIN "],
        OpenaiKey => &["sk-"],
        GithubToken => &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
        _ => &[],
    };
    let (pattern, placeholder, check): (String, _, Check) = match builtin {
        BuiltinDetector::Email => (
            format!(r"{B}[A-Za-z0-9._%+-]{{1,64}}@[A-Za-z0-9](?:[A-Za-z0-9.-]{{0,62}}[A-Za-z0-9])?\.[A-Za-z]{{2,18}}{B}"),
            "[EMAIL]",
            email,
        ),
        BuiltinDetector::CreditCard => (
            format!(r"{B}(?:\d{{4}}[ -]\d{{6}}[ -]\d{{5}}|(?:\d{{4}}[ -]){{3}}\d{{1,7}}|\d{{13,19}}){B}"),
            "[CREDIT_CARD]",
            credit_card,
        ),
        BuiltinDetector::UsSsn => (format!(r"{B}\d{{3}}-\d{{2}}-\d{{4}}{B}"), "[US_SSN]", us_ssn),
        BuiltinDetector::Phone => (
            format!(
                r"\+[1-9]\d{{0,2}}[ .-]?\(?\d{{1,4}}\)?(?:[ .-]?\d{{2,4}}){{2,4}}{B}|(?:\(\d{{3}}\) ?|{B}\d{{3}}[ .-])\d{{3}}[ .-]\d{{4}}{B}"
            ),
            "[PHONE]",
            phone,
        ),
        // An IPv6 address does not start right after a letter, digit or `_` (the check refuses
        // such a match as glued to its word): the leading boundary keeps the search from
        // stopping at every `std::vec`-like span of code, the check from seeing them.
        BuiltinDetector::IpAddress => (
            format!(
                r"{B}(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){{3}}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d){B}|(?:{B}[0-9a-fA-F]{{1,4}}|{NB})(?::[0-9a-fA-F]{{0,4}}){{2,7}}(?:(?:\.\d{{1,3}}){{3}})?"
            ),
            "[IP_ADDRESS]",
            ip_address,
        ),
        BuiltinDetector::Iban => (
            format!(r"{B}[A-Z]{{2}}\d{{2}}(?: ?[A-Z0-9]{{4}}){{2,7}}(?: ?[A-Z0-9]{{1,3}})?{B}"),
            "[IBAN]",
            iban,
        ),
        BuiltinDetector::AwsAccessKey => (
            format!(r"{B}(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{{16}}{B}"),
            "[AWS_ACCESS_KEY]",
            always,
        ),
        BuiltinDetector::PrivateKey if response => (
            r"-----BEGIN [A-Z0-9 ]{0,24}PRIVATE KEY(?: BLOCK)?-----".to_string(),
            "[PRIVATE_KEY]",
            always,
        ),
        BuiltinDetector::PrivateKey => (
            r"-----BEGIN [A-Z0-9 ]{0,24}PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=:,. \t\r\n-]*?-----END [A-Z0-9 ]{0,24}PRIVATE KEY(?: BLOCK)?-----)?".to_string(),
            "[PRIVATE_KEY]",
            always,
        ),
        BuiltinDetector::OpenaiKey => (
            format!(r"{B}sk-(?:[a-z]{{2,8}}-)?[A-Za-z0-9_-]{{20,100}}T3BlbkFJ[A-Za-z0-9_-]{{20,100}}{B}"),
            "[OPENAI_KEY]",
            always,
        ),
        BuiltinDetector::GithubToken => (
            format!(r"{B}(?:gh[pousr]_[A-Za-z0-9]{{36}}|github_pat_[A-Za-z0-9]{{22}}_[A-Za-z0-9]{{59}}){B}"),
            "[GITHUB_TOKEN]",
            always,
        ),
    };
    Detector {
        // ASCII classes: `\d` is 0-9 and a match's byte length stays bounded.
        pattern: format!("(?-u){pattern}"),
        placeholder,
        check,
        required,
        // An address's `@` follows at most 64 bytes of its local part; the others' literals
        // are prefixes.
        lead: match builtin {
            Email => 64,
            _ => required.iter().map(|l| l.len()).max().unwrap_or(1) - 1,
        },
    }
}

fn always(_: &str, _: usize, _: usize) -> bool {
    true
}

/// A separator joins the candidate to more digits (`1234-5678-…`, `1.2.3.4.5`): it is one
/// part of a longer number.
fn part_of_longer_number(text: &str, start: usize, end: usize) -> bool {
    let joined = |sep: Option<char>, next: Option<char>| {
        matches!(sep, Some('-' | '.' | '/' | ',' | ':')) && next.is_some_and(|c| c.is_ascii_digit())
    };
    let prev = before(text, start);
    let prev2 = prev.and_then(|c| before(text, start - c.len_utf8()));
    let next = after(text, end);
    let next2 = next.and_then(|c| after(text, end + c.len_utf8()));
    joined(prev, prev2) || joined(next, next2)
}

fn before(text: &str, start: usize) -> Option<char> {
    text.get(..start).and_then(|t| t.chars().next_back())
}

fn after(text: &str, end: usize) -> Option<char> {
    text.get(end..).and_then(|t| t.chars().next())
}

/// Image names in code (`icon@2x.png`) look like addresses.
const FILE_SUFFIXES: [&str; 10] = ["png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff"];

fn email(text: &str, start: usize, end: usize) -> bool {
    let found = &text[start..end];
    let Some((local, domain)) = found.split_once('@') else {
        return false;
    };
    let tld = domain.rsplit('.').next().unwrap_or_default().to_ascii_lowercase();
    !local.starts_with('.')
        && !local.ends_with('.')
        && !found.contains("..")
        && domain
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
        && !FILE_SUFFIXES.contains(&tld.as_str())
}

/// Passes the Luhn check.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn credit_card(text: &str, start: usize, end: usize) -> bool {
    let found = &text.as_bytes()[start..end];
    let separators: Vec<u8> = found.iter().copied().filter(|b| !b.is_ascii_digit()).collect();
    if separators.windows(2).any(|w| w[0] != w[1]) {
        return false;
    }
    if part_of_longer_number(text, start, end) {
        return false;
    }
    let digits: Vec<u8> = found.iter().copied().filter(u8::is_ascii_digit).collect();
    if !(13..=19).contains(&digits.len()) || !luhn(&digits) {
        return false;
    }
    // A known network's prefix and length: random digit runs pass Luhn one time in ten.
    let prefix = |n: usize| -> u32 {
        std::str::from_utf8(&digits[..n])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let len = digits.len();
    match digits[0] {
        b'4' => matches!(len, 13 | 16 | 19),
        b'5' => (51..=55).contains(&prefix(2)) && len == 16,
        b'2' => (2221..=2720).contains(&prefix(4)) && len == 16,
        b'3' => match prefix(2) {
            34 | 37 => len == 15,
            36 | 38 | 39 => (14..=19).contains(&len),
            30 => (300..=305).contains(&prefix(3)) && (14..=19).contains(&len),
            35 => (3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len),
            _ => false,
        },
        b'6' => {
            (prefix(4) == 6011 || prefix(2) == 65 || (644..=649).contains(&prefix(3)) || prefix(2) == 62)
                && (16..=19).contains(&len)
        }
        _ => false,
    }
}

fn us_ssn(text: &str, start: usize, end: usize) -> bool {
    let found = &text[start..end];
    let area: u32 = found[..3].parse().unwrap_or(0);
    let group = &found[4..6];
    let serial = &found[7..];
    area != 0
        && area != 666
        && area < 900
        && group != "00"
        && serial != "0000"
        && !part_of_longer_number(text, start, end)
}

fn phone(text: &str, start: usize, end: usize) -> bool {
    let found = &text[start..end];
    if let Some(c) = before(text, start) {
        if c.is_alphanumeric() || matches!(c, '+' | '-' | '.' | '/' | ')') {
            return false;
        }
    }
    if part_of_longer_number(text, start, end) || after(text, end) == Some('%') {
        return false;
    }
    let digits: Vec<u8> = found.bytes().filter(u8::is_ascii_digit).collect();
    if found.starts_with('+') {
        return (8..=15).contains(&digits.len());
    }
    // North American numbers: area code and exchange start with 2-9.
    digits.len() == 10 && digits[0] >= b'2' && digits[3] >= b'2'
}

fn ip_address(text: &str, start: usize, end: usize) -> bool {
    let found = &text[start..end];
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == ':' || c == '_');
    // `1.2.3.4.5`, `v1.2.3.4`, `std::vec` and `10:30:00` are not addresses.
    if glued(before(text, start)) || glued(after(text, end)) || part_of_longer_number(text, start, end) {
        return false;
    }
    if found.contains(':') {
        found != "::" && found.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        found.parse::<std::net::Ipv4Addr>().is_ok()
    }
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: [(&str, usize); 60] = [
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SE", 24),
    ("SI", 19),
];
const IBAN_MORE: [(&str, usize); 8] = [
    ("SK", 24),
    ("SM", 27),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

fn iban(text: &str, start: usize, end: usize) -> bool {
    let compact: Vec<u8> = text.as_bytes()[start..end]
        .iter()
        .copied()
        .filter(|b| *b != b' ')
        .collect();
    let country = std::str::from_utf8(&compact[..2]).unwrap_or_default();
    let Some(&(_, len)) = IBAN_LENGTHS.iter().chain(IBAN_MORE.iter()).find(|(c, _)| *c == country) else {
        return false;
    };
    compact.len() == len && mod97(&compact)
}

/// The IBAN checksum: the rearranged number, letters as 10..35, is 1 modulo 97.
pub fn mod97(iban: &[u8]) -> bool {
    let mut rest = 0u32;
    for &b in iban[4..].iter().chain(&iban[..4]) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rest = if value >= 10 {
            (rest * 100 + value) % 97
        } else {
            (rest * 10 + value) % 97
        };
    }
    rest == 1
}

#[cfg(test)]
#[path = "detectors_tests.rs"]
mod tests;

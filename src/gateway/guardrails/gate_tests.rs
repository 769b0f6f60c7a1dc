//! A gate never closes on text a match could be in, and bounds where an unfinished one starts.

use regex::Regex;

use super::Gate;

const PATTERNS: [&str; 6] = [
    r"(?i)project\s+falcon",
    r"(?:abc)?d+",
    r"(?i)\bsecret[-_ ]?(?:key|token)\b",
    r"x{2,5}y",
    r"[0-9]{3}",
    r"(?i)ſtraße",
];

#[test]
fn patterns_with_a_small_set_of_prefixes_are_gated() {
    let lead = |pattern: &str| Gate::prefixes(pattern).ok().flatten().map(|g| g.lead);
    assert_eq!(lead(r"(?i)project\s+falcon"), Some(6));
    assert_eq!(lead(r"(?:abc)?d+"), Some(3));
    // Ten digits a position: the extraction stops at two (a shorter prefix is still one).
    assert_eq!(lead(r"[0-9]{3}"), Some(1));
    for ungated in [r".*x", r"a?", r"\w+@", r"(?s).x"] {
        assert_eq!(lead(ungated), None, "{ungated}");
    }
}

/// Text the gate is closed on has no match, and text ending inside a match (a prefix of
/// some text holding one) that the gate is closed on started that match at most `lead`
/// bytes before its end.
#[test]
fn a_closed_gate_means_no_match_and_an_unfinished_one_within_its_lead() {
    let mut rng = fastrand::Rng::with_seed(3);
    let pieces = [
        "project",
        "PROJECT",
        "Pro",
        " ",
        "project falcon",
        "PROJECT \tFalcon",
        "falcon",
        "FALCON",
        "abc",
        "ab",
        "d",
        "x",
        "xx",
        "y",
        "1",
        "23",
        "secret",
        "SeCrEt",
        "-",
        "key",
        "secret_token",
        "Secret Key",
        "xxy",
        "xxxxxy",
        "ſtraße",
        "token",
        "STRASSE",
        "e",
    ];
    for pattern in PATTERNS {
        let regex = Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        let Some(gate) = Gate::prefixes(pattern).ok().flatten() else {
            panic!("{pattern} has a gate")
        };
        let mut seen = 0;
        for _ in 0..3000 {
            let text: String = (0..rng.usize(1..12))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            for m in regex.find_iter(&text) {
                seen += 1;
                assert!(
                    gate.open(m.as_str().as_bytes()),
                    "{pattern}: closed on {:?}",
                    m.as_str()
                );
                // Cut inside the match: if the gate is closed on the text before the cut, the
                // match started within the lead.
                for cut in m.start()..m.end() {
                    if text.is_char_boundary(cut) && !gate.open(&text.as_bytes()[..cut]) {
                        assert!(cut - m.start() <= gate.lead, "{pattern}: {text:?} cut at {cut}");
                    }
                }
            }
            if !gate.open(text.as_bytes()) {
                assert!(regex.find(&text).is_none(), "{pattern}: closed on {text:?}");
            }
        }
        assert!(seen > 40, "{pattern}: only {seen} matches");
    }
}

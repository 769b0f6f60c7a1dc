//! The prefiltered keyword search finds exactly what the overlapping search over the whole
//! text finds.

use super::*;

/// Every occurrence by the plain overlapping search from `from`, sorted.
fn overlapping(keywords: &[String], text: &str, from: usize) -> Vec<(usize, usize, usize)> {
    let automaton = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .build(keywords)
        .expect("automaton");
    let input = aho_corasick::Input::new(text).span(from..text.len());
    let mut found: Vec<_> = automaton
        .find_overlapping_iter(input)
        .map(|m| (m.start(), m.end(), m.pattern().as_usize()))
        .collect();
    found.sort_unstable();
    found
}

fn prefiltered(keywords: &Keywords, text: &str, from: usize) -> Vec<(usize, usize, usize)> {
    let mut found = Vec::new();
    keywords.each(text, from, &mut |start, end, k| found.push((start, end, k)));
    found.sort_unstable();
    found
}

#[test]
fn the_prefiltered_search_finds_every_overlapping_occurrence() {
    let sets: Vec<Vec<String>> = [
        &["bluebird", "nightjar", "red team"][..],
        &["red team", "team lead", "am", "teamster", "a"],
        &["café", "CAFÉ au lait", "é", "ſtar", "star"],
        &["aaa", "aa", "aaaa b"],
    ]
    .iter()
    .map(|set| set.iter().map(|k| k.to_string()).collect())
    .collect();
    let pieces = [
        "red", " ", "team", "Team", "LEAD", "lead", "bluebird", "BlueBird", "nightjar", "night", "jar", "a", "aa", "b",
        "café", "CAFÉ", "é", "É", "au lait", "ſtar", "star", "x", "\n", "—", "st", "amster", "redteam",
    ];
    let mut rng = fastrand::Rng::with_seed(17);
    let mut occurrences = 0;
    for round in 0..4000 {
        let set = &sets[round % sets.len()];
        let keywords = Keywords::new(set).expect("keywords");
        let text: String = (0..rng.usize(0..40))
            .map(|_| pieces[rng.usize(0..pieces.len())])
            .collect();
        let mut from = rng.usize(0..=text.len());
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        let expected = overlapping(set, &text, from);
        occurrences += expected.len();
        assert_eq!(
            prefiltered(&keywords, &text, from),
            expected,
            "{set:?} in {text:?} from {from}"
        );
    }
    assert!(occurrences > 10_000, "the texts exercise the search: {occurrences}");
}

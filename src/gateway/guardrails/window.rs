//! Scanning text that arrives in pieces (a streamed answer's deltas) without ever letting a
//! match through whole: the last `window` bytes are held back until more text, or the end,
//! shows what they are.
//!
//! Why the output does not depend on where the pieces were cut: the matcher's window is the
//! longest match any rule can make plus the context its checks read after a match. A match
//! that starts more than a window before the end of the text seen so far is therefore
//! complete and final (a longer or different one would be longer than any match can be), so
//! it is acted on and released; one that starts later waits for more text. The text after
//! the cut is kept with two characters before it as context (for `\b`, whole-word keywords
//! and the checks of numbers).
//!
//! Text is scanned in batches: only once [`BATCH`] bytes beyond the window have arrived (or
//! the text ends). Each search of the matcher (a detector, a pattern, the keywords) has its
//! own window, its longest match plus the context: the digit-led detectors' is about 60
//! bytes where a pattern with unbounded repetition makes the release window 264. What a
//! search found more than its own window before the end is final too, so the next scan keeps
//! it and resumes that search there (for a regex, at the end of its last final match, as its
//! own search over the whole text would) instead of at the cut: each byte is scanned about
//! `(search window + BATCH) / BATCH` times by each search rather than `(window + BATCH) /
//! BATCH`, and the output is still the whole text's whatever the cuts. A stream therefore holds back at most `window + BATCH` bytes (plus the
//! last delta, when one delta is larger than that): O(window), whatever the answer's length.
//!
//! A window can also keep a [`Record`] of its text: what came and where it was masked, for
//! surfaces that repeat the streamed text whole in later events (the Responses API). A whole
//! text byte-identical to the record's (an exact comparison) is masked from the record without
//! a scan: the window's output does not depend on where the text was cut, so it is what a
//! scan of the whole text gives.

use super::json_text::{ends_in_string, JsonText};
use super::matcher::{Candidate, Finding, Form, Matcher};

/// Bytes of new text, beyond the window, that make a scan worth running.
pub const BATCH: usize = 256;

/// The held-back text of one stream of text (one choice of a chat stream).
#[derive(Default, Debug)]
pub struct Window {
    /// Text not released yet, after `context` bytes already released.
    held: String,
    context: usize,
    findings: Vec<Finding>,
    /// Rules that masked text in this window, as bits (rule index < 64).
    pub masked: u64,
    /// What the text is ([`Form`]): JSON source is scanned decoded and a match masking would
    /// break its JSON blocks; in signed text every match blocks.
    pub form: Form,
    /// JSON source: `held` starts inside a string.
    in_string: bool,
    /// Source bytes released so far.
    released: usize,
    /// The text as it came and its masks, when kept ([`Window::record`]).
    record: Option<Record>,
    /// Plain text: where each search of the matcher resumes ([`Matcher::candidates`]; empty:
    /// at the cut), the candidates of earlier scans that are final, and scratch space.
    resume: Vec<usize>,
    carried: Vec<Candidate>,
    candidates: Vec<Candidate>,
}

/// A window's whole text and the masks it released, at offsets of that text.
#[derive(Default, Debug)]
pub struct Record {
    text: String,
    masks: Vec<Finding>,
    /// The last text came (`push` with `last`): the masks are those of the whole text.
    complete: bool,
}

impl Record {
    /// Bytes of memory the record holds.
    pub fn cost(&self) -> usize {
        self.text.len() + self.masks.len() * std::mem::size_of::<Finding>()
    }
}

/// What a piece of text released.
#[derive(Debug, PartialEq, Eq)]
pub enum Released {
    /// This text may go to the client (masked; possibly empty while text is held).
    Text(String),
    /// A blocking rule matched: the stream must end with an error.
    Blocked(u16),
}

impl Window {
    /// Adds `text`; `last`: no more text follows (everything held is released).
    pub fn push(&mut self, matcher: &Matcher, text: &str, last: bool) -> Released {
        if let Some(record) = &mut self.record {
            match record.complete && !text.is_empty() {
                // Text after the end: the masks no longer are the whole text's.
                true => self.record = None,
                false => {
                    record.text.push_str(text);
                    record.complete |= last;
                }
            }
        }
        self.held.push_str(text);
        let unreleased = self.held.len() - self.context;
        if unreleased == 0 || (!last && unreleased < matcher.window + BATCH) {
            return Released::Text(String::new());
        }
        if self.form == Form::Json {
            return self.push_json(matcher, last);
        }
        self.findings.clear();
        let from = self.context;
        let mut raw = std::mem::take(&mut self.candidates);
        raw.clear();
        raw.extend(self.carried.drain(..).filter(|c| c.start >= from));
        let resume = &self.resume;
        let starts = |search: usize| resume.get(search).map_or(from, |at| (*at).max(from));
        let closed = matcher.candidates(&self.held, &starts, None, &mut raw);
        matcher.judge(&self.held, &mut raw, None, &mut self.findings);
        let len = self.held.len();
        let mut cut = match last {
            true => len,
            false => floor_boundary(&self.held, len.saturating_sub(matcher.window)).max(self.context),
        };
        for f in &self.findings {
            if f.start >= cut {
                break;
            }
            if matcher.blocking(std::slice::from_ref(f)).is_some() || self.form == Form::Signed {
                return Released::Blocked(f.rule);
            }
            cut = cut.max(f.end);
        }
        let acted = self.acted(cut, |at| at);
        let released = matcher.mask(&self.held[self.context..cut], &acted);
        self.carry(matcher, &raw, closed, cut, last);
        self.candidates = raw;
        self.keep_from(context_start(&self.held, cut), cut);
        Released::Text(released)
    }

    /// Keeps, for the next scan, what this one found that no more text can change: per
    /// search, the candidates starting more than its own window before the end (and after the
    /// cut), and where it resumes (past them, at the end of the last one when its matches
    /// follow one another; only its gate's lead before the end when the gate found none of
    /// its literals, the `closed` searches). A search whose resume point falls before the cut
    /// (a finding acted on reached past it) starts again at the cut, carrying nothing.
    fn carry(&mut self, matcher: &Matcher, raw: &[Candidate], closed: u64, cut: usize, last: bool) {
        self.resume.clear();
        self.carried.clear();
        if last {
            return;
        }
        let len = self.held.len();
        let done: Vec<usize> = (0..matcher.engines())
            .map(|search| floor_boundary(&self.held, len.saturating_sub(matcher.search_window(search))))
            .collect();
        self.resume.extend_from_slice(&done);
        for (search, resume) in self.resume.iter_mut().enumerate().take(64) {
            if let Some(lead) = matcher.lead(search).filter(|_| closed & (1 << search) != 0) {
                *resume = (*resume).max(floor_boundary(&self.held, len.saturating_sub(lead)));
            }
        }
        for c in raw {
            let search = matcher.search_of(c.engine);
            if matcher.chained(search) && c.start < done[search] {
                self.resume[search] = self.resume[search].max(c.end);
            }
        }
        let carried = raw.iter().filter(|c| {
            let search = matcher.search_of(c.engine);
            c.start >= cut && c.start < done[search] && self.resume[search] >= cut
        });
        self.carried.extend(carried);
    }

    /// [`Window::push`] for JSON source: the held text is decoded (from the string state it
    /// starts in), scanned, and the findings acted on map back to the source.
    fn push_json(&mut self, matcher: &Matcher, last: bool) -> Released {
        let decoded = JsonText::decode(&self.held, self.in_string, last);
        let from = decoded.to_decoded(self.context);
        self.findings.clear();
        matcher.find(&decoded.text, from, None, &mut self.findings);
        let len = decoded.text.len();
        let mut cut = match last {
            true => len,
            false => floor_boundary(&decoded.text, len.saturating_sub(matcher.window)).max(from),
        };
        for f in &self.findings {
            if f.start >= cut {
                break;
            }
            if matcher.blocking(std::slice::from_ref(f)).is_some() || !matcher.fits_json(&decoded, f) {
                return Released::Blocked(f.rule);
            }
            cut = cut.max(f.end);
        }
        let acted = self.acted(cut, |at| decoded.to_source(at));
        let (cut_at, keep) = (
            decoded.to_source(cut),
            decoded.to_source(context_start(&decoded.text, cut)),
        );
        let released = matcher.mask(&self.held[self.context..cut_at], &acted);
        self.in_string = ends_in_string(&self.held[..keep], self.in_string);
        self.keep_from(keep, cut_at);
        Released::Text(released)
    }

    /// The findings before `cut`, at their source offsets (`source` maps an offset of the
    /// scanned text) relative to the first unreleased byte; counted as masks.
    fn acted(&mut self, cut: usize, source: impl Fn(usize) -> usize) -> Vec<Finding> {
        let acted: Vec<Finding> = self
            .findings
            .iter()
            .filter(|f| f.start < cut)
            .map(|f| Finding {
                start: source(f.start) - self.context,
                end: source(f.end) - self.context,
                ..*f
            })
            .collect();
        for f in &acted {
            if f.rule < 64 {
                self.masked |= 1 << f.rule;
            }
        }
        if let Some(record) = &mut self.record {
            let at = self.released;
            record.masks.extend(acted.iter().map(|f| Finding {
                start: at + f.start,
                end: at + f.end,
                ..*f
            }));
        }
        acted
    }

    /// Drops the held text before `keep` (the character before the cut, context for the next
    /// scan); the text up to `cut` is released.
    fn keep_from(&mut self, keep: usize, cut: usize) {
        self.released += cut - self.context;
        self.held.drain(..keep);
        self.context = cut - keep;
        for at in &mut self.resume {
            *at = at.saturating_sub(keep);
        }
        for c in &mut self.carried {
            (c.start, c.end) = (c.start - keep, c.end - keep);
        }
    }

    /// Starts keeping a [`Record`] of the text (before the first push).
    pub fn record(&mut self) {
        self.record = Some(Record::default());
    }

    /// Stops keeping the record, freeing it.
    pub fn forget(&mut self) {
        self.record = None;
    }

    /// The memory the record holds (0 without one).
    pub fn record_cost(&self) -> usize {
        self.record.as_ref().map_or(0, Record::cost)
    }

    /// The masks of `text` of `form`, when it is this window's whole text, released in full:
    /// byte-identical to the text that came, every piece of it. `None`: scan it.
    pub fn masks_of(&self, text: &str, form: Form) -> Option<&[Finding]> {
        let record = self.record.as_ref()?;
        let whole = record.complete && !self.holds() && self.form == form && record.text == text;
        whole.then_some(record.masks.as_slice())
    }

    /// Whether text is held back.
    pub fn holds(&self) -> bool {
        self.held.len() > self.context
    }
}

/// The start of the character before `at` (0 at the start).
fn char_before(text: &str, at: usize) -> usize {
    text[..at].chars().next_back().map_or(0, |c| at - c.len_utf8())
}

/// Where the context kept before a cut at `at` starts: two characters (`\b` reads one, the
/// checks of numbers two: `1.4111 1111 1111 1111` is part of a longer number).
fn context_start(text: &str, at: usize) -> usize {
    char_before(text, char_before(text, at))
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;

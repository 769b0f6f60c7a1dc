//! A streamed answer cut into server-sent events, cheaply in the common case: an event that
//! is one `data:` line (after an optional `event:` line), ended by `\n\n`, is handed on
//! borrowed from the bytes received, with no copy and no `String` per field. Every other
//! block (comments, `id`, `retry`, several `data` lines, a field without a colon, bytes that
//! are not UTF-8) goes to the `sse-parse` parser, at a block boundary so it is always in a
//! clean state; a carriage return anywhere (CR or CRLF line ends) or a byte order mark
//! opening the stream hands it the rest of the stream. Both give the same events
//! (`sse_split_tests.rs`). The parser's `id` and `retry` state is not kept for the blocks
//! handled here: the guard writes neither.

use sse_parse::SseParser;

/// What an event is handed to: its name (`message` when unnamed) and data; `Err` stops.
pub type Each<'e> = dyn FnMut(&str, &str) -> Result<(), ()> + 'e;

#[derive(Default)]
pub struct Splitter {
    /// The start of a block not complete yet.
    pending: Vec<u8>,
    /// How far `pending` was scanned (no blank line, no carriage return in it).
    progress: Progress,
    parser: SseParser,
    /// Whether the stream's first block was read (a byte order mark can only open it).
    started: bool,
    parser_fed: bool,
    /// The parser reads everything from here on.
    parsed: bool,
}

/// How far a block was scanned, from its start: bytes, its first line break (`usize::MAX`
/// before one) and how many line breaks.
#[derive(Clone, Copy)]
struct Progress {
    scanned: usize,
    first: usize,
    lines: usize,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            scanned: 0,
            first: usize::MAX,
            lines: 0,
        }
    }
}

/// Where the next block ends.
enum Scan {
    /// At this index (the `\n` of its blank line), after its first line break and with this
    /// many line breaks.
    Block {
        end: usize,
        first: usize,
        lines: usize,
    },
    CarriageReturn,
    More,
}

impl Splitter {
    /// Hands each event completed by `bytes` to `each`.
    pub fn feed(&mut self, bytes: &[u8], each: &mut Each) -> Result<(), ()> {
        if self.parsed {
            return self.parse(bytes, each);
        }
        let mut pending = std::mem::take(&mut self.pending);
        let buffered = !pending.is_empty();
        if buffered {
            pending.extend_from_slice(bytes);
        }
        let input = if buffered { &pending[..] } else { bytes };
        let result = self.split(input, each);
        let consumed = *result.as_ref().unwrap_or(&input.len());
        match buffered {
            true => drop(pending.drain(..consumed)),
            false => pending.extend_from_slice(&bytes[consumed..]),
        }
        self.pending = pending;
        result.map(drop)
    }

    /// The stream ended: what is left goes to the parser, as a stream's end does.
    pub fn finish(&mut self, each: &mut Each) -> Result<(), ()> {
        let pending = std::mem::take(&mut self.pending);
        if !self.parsed {
            self.parse(&pending, each)?;
        }
        self.parser.finish();
        self.drain(each)
    }

    /// The events of the complete blocks of `input`; how many bytes were consumed.
    fn split(&mut self, input: &[u8], each: &mut Each) -> Result<usize, ()> {
        let mut at = 0;
        loop {
            if !self.started && input.get(at) == Some(&0xEF) {
                self.parsed = true;
                self.parse(&input[at..], each)?;
                return Ok(input.len());
            }
            let (end, first, lines) = match next_block(input, at, &mut self.progress) {
                Scan::Block { end, first, lines } => (end, first, lines),
                Scan::CarriageReturn => {
                    self.parsed = true;
                    self.parse(&input[at..], each)?;
                    return Ok(input.len());
                }
                Scan::More => return Ok(at),
            };
            let block = &input[at..=end];
            self.started = true;
            match simple(block, first, lines) {
                Some((name, data)) => each(name, data)?,
                None => self.parse(block, each)?,
            }
            at = end + 1;
        }
    }

    fn parse(&mut self, bytes: &[u8], each: &mut Each) -> Result<(), ()> {
        if !self.parser_fed {
            self.parser_fed = true;
            // The parser takes a byte order mark at its own start for the stream's: a blank
            // line first (no event) when its start is not the stream's.
            if self.started {
                self.parser.feed(b"\n");
            }
        }
        self.parser.feed(bytes);
        self.drain(each)
    }

    fn drain(&mut self, each: &mut Each) -> Result<(), ()> {
        while let Some(event) = self.parser.next_event() {
            each(&event.event, &event.data)?;
        }
        Ok(())
    }
}

/// The end of the block starting at `from` in `input`, resuming where `progress` (reset
/// when the block is complete) left its scan; its first line break is relative to `from`.
fn next_block(input: &[u8], from: usize, progress: &mut Progress) -> Scan {
    let Progress {
        scanned,
        mut first,
        mut lines,
    } = std::mem::take(progress);
    let mut at = from + scanned;
    while let Some(found) = memchr::memchr2(b'\n', b'\r', &input[at..]) {
        let end = at + found;
        if input[end] == b'\r' {
            return Scan::CarriageReturn;
        }
        first = first.min(end - from);
        lines += 1;
        if end == from || input[end - 1] == b'\n' {
            return Scan::Block { end, first, lines };
        }
        at = end + 1;
    }
    *progress = Progress {
        scanned: input.len() - from,
        first,
        lines,
    };
    Scan::More
}

/// The name and data of a block that is `data:` alone, or `event:` then `data:` (each with
/// one optional space after the colon), ended by a blank line; `None` for anything else.
/// `first` is the index of its first line break, `lines` how many it has.
fn simple(block: &[u8], first: usize, lines: usize) -> Option<(&str, &str)> {
    let (name, data) = match lines {
        2 => ("message", block.get(..first)?),
        3 => {
            let name = std::str::from_utf8(value(block.get(..first)?, b"event:")?).ok()?;
            (
                if name.is_empty() { "message" } else { name },
                block.get(first + 1..block.len() - 2)?,
            )
        }
        _ => return None,
    };
    Some((name, std::str::from_utf8(value(data, b"data:")?).ok()?))
}

/// The value of a one-line field `line` named by `field` (with its colon).
fn value<'a>(line: &'a [u8], field: &[u8]) -> Option<&'a [u8]> {
    let value = line.strip_prefix(field)?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

#[cfg(test)]
#[path = "sse_split_tests.rs"]
mod tests;

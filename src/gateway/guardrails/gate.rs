//! The gate of a search: literals every match of it contains one of, found by one automaton
//! before the regex is asked. Text without any is not searched at all (a search of the regex
//! costs hundreds of instructions even where its own prefilter finds nothing, and a stream's
//! window searches every few hundred bytes); and a stream's next search need not go back
//! over the window for it, only `lead` bytes: a match that could still grow past the end
//! starts at most that far before it when no literal was seen.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use regex_syntax::hir::literal::{ExtractKind, Extractor};

use super::GuardError;

/// Prefix literals a pattern's gate may have (more would make the automaton slow).
const MOST_PREFIXES: usize = 256;

pub struct Gate {
    literals: AhoCorasick,
    /// How far before the end of text holding none of the literals a match may start and
    /// still be incomplete.
    pub lead: usize,
}

impl Gate {
    /// A built-in's gate: `required` literals that every match contains, at most `lead`
    /// bytes after its start (`lead` counts the literal but its last byte).
    pub fn builtin(required: &[&str], lead: usize) -> Result<Option<Gate>, GuardError> {
        if required.is_empty() {
            return Ok(None);
        }
        let literals = AhoCorasick::new(required).map_err(|source| GuardError::Gate { source })?;
        Ok(Some(Gate { literals, lead }))
    }

    /// A pattern's gate: the literals every match starts with, as the regex's own literal
    /// extraction finds them (compared ignoring ASCII case, a superset of the case variants
    /// it lists); `None` when they are not a small finite set.
    pub fn prefixes(pattern: &str) -> Result<Option<Gate>, GuardError> {
        let Ok(hir) = regex_syntax::Parser::new().parse(pattern) else {
            return Ok(None);
        };
        let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
        let Some(found) = seq.literals() else {
            return Ok(None);
        };
        if found.is_empty() || found.len() > MOST_PREFIXES || found.iter().any(|l| l.as_bytes().is_empty()) {
            return Ok(None);
        }
        let mut literals: Vec<Vec<u8>> = found.iter().map(|l| l.as_bytes().to_ascii_lowercase()).collect();
        literals.sort_unstable();
        literals.dedup();
        let lead = literals.iter().map(Vec::len).max().unwrap_or(1) - 1;
        let literals = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(&literals)
            .map_err(|source| GuardError::Gate { source })?;
        Ok(Some(Gate { literals, lead }))
    }

    /// Whether `text` holds one of the literals.
    pub fn open(&self, text: &[u8]) -> bool {
        self.literals.is_match(text)
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;

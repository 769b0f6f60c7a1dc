//! Keys already matched by their SHA-256 in this access table, remembered by a keyed 128-bit
//! SipHash-1-3 tag of the presented key, so a key's later requests skip SHA-256 (2,400
//! instructions per request with aws-lc's AVX rounds — CPUs without SHA-NI, and callgrind —
//! against about 300 for the tag and the lookup).
//!
//! Why this is not a weaker way to recognise a key:
//! - only a key whose SHA-256 matched a key Secret of *this* table is ever remembered, and the
//!   cache belongs to the table: a new table (a key Secret deleted, a team changed) starts
//!   with an empty cache and a new random SipHash key, so a deleted key stops at once;
//! - the SipHash key is 128 bits from the operating system's CSPRNG, made per table, never
//!   leaves the process, and no tag is ever shown: to be taken for a remembered key, a
//!   presented key must hit its 128-bit tag blind (a chance of 2⁻¹²⁸ a try per key);
//! - neither the key nor anything it can be read back from without the SipHash key is kept
//!   (the tag of a 256-bit random key under a secret key), and tags are compared in constant
//!   time. Unknown keys are never remembered: they pay SHA-256 every time, and cannot grow
//!   the cache, which holds at most one entry per configured key.

use std::sync::{PoisonError, RwLock};

use rustc_hash::FxHashMap;
use siphasher::sip128::{Hash128, SipHasher13};
use subtle::ConstantTimeEq;

/// Tags of the keys seen, by their first word, each with its second word and its team.
pub struct SeenKeys {
    /// `None` if the operating system gave no random key: nothing is remembered then.
    hasher: Option<SipHasher13>,
    seen: RwLock<FxHashMap<u64, (u64, usize)>>,
    /// The number of configured keys: more tags than that cannot be right.
    capacity: usize,
}

impl Default for SeenKeys {
    fn default() -> Self {
        SeenKeys::new(0)
    }
}

impl SeenKeys {
    /// An empty cache for a table of `keys` keys, with a new random SipHash key.
    pub fn new(keys: usize) -> Self {
        let mut key = [0u8; 16];
        let hasher = match keys {
            0 => None,
            _ => getrandom::fill(&mut key).ok().map(|()| SipHasher13::new_with_key(&key)),
        };
        SeenKeys {
            hasher,
            seen: RwLock::new(FxHashMap::default()),
            capacity: keys,
        }
    }

    /// The presented key's tag (none when the cache is off).
    pub fn tag(&self, key: &[u8]) -> Option<Hash128> {
        self.hasher.as_ref().map(|hasher| hasher.hash(key))
    }

    /// The team of a key remembered with this tag. Which entry is looked at depends on the
    /// tag's first word, which is unpredictable without the SipHash key; the second word is
    /// then compared in constant time.
    pub fn team_of(&self, tag: &Hash128) -> Option<usize> {
        let seen = self.seen.read().unwrap_or_else(PoisonError::into_inner);
        let (second, team) = seen.get(&tag.h1)?;
        bool::from(second.ct_eq(&tag.h2)).then_some(*team)
    }

    /// Remembers the tag of a key whose SHA-256 matched `team`'s key. Two keys whose tags
    /// share a first word (a chance of about 2⁻⁶⁴ a pair) keep the first: the other is
    /// always checked by its SHA-256.
    pub fn remember(&self, tag: Hash128, team: usize) {
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        if seen.len() < self.capacity {
            seen.entry(tag.h1).or_insert((tag.h2, team));
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_matches_whole_and_the_cache_stays_bounded() {
        let seen = SeenKeys::new(2);
        let tag = seen.tag(b"mg-a").expect("random key");
        assert_eq!(seen.tag(b"mg-a"), Some(tag));
        assert_ne!(seen.tag(b"mg-b"), Some(tag));
        // Another table's SipHash key gives the same key another tag.
        assert_ne!(SeenKeys::new(2).tag(b"mg-a"), Some(tag));
        assert_eq!(seen.team_of(&tag), None);
        seen.remember(tag, 7);
        assert_eq!(seen.team_of(&tag), Some(7));
        // The same first word with another second word is not the key.
        let near = Hash128 {
            h1: tag.h1,
            h2: tag.h2 ^ 1,
        };
        assert_eq!(seen.team_of(&near), None);
        // A first word already taken keeps its entry.
        seen.remember(near, 8);
        assert_eq!(seen.team_of(&tag), Some(7));
        assert_eq!(seen.team_of(&near), None);
        // Never more entries than keys.
        for n in 0u8..10 {
            if let Some(tag) = seen.tag(&[n]) {
                seen.remember(tag, 1);
            }
        }
        assert_eq!(seen.len(), 2);
        // No keys, no cache.
        assert!(SeenKeys::new(0).tag(b"mg-a").is_none());
    }
}

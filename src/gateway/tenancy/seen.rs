//! Keys already matched by their SHA-256 in this access table, remembered by a keyed 128-bit
//! SipHash-1-3 tag of the presented key, so a key's later requests skip SHA-256 (2,400
//! instructions per request with aws-lc's AVX rounds — CPUs without SHA-NI, and callgrind —
//! against about 250 for the tag and the lookup).
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
//!   time. Unknown keys are never remembered: they pay SHA-256 every time, and cannot fill
//!   the cache, a fixed table of twice as many slots as configured keys.

use std::sync::OnceLock;

use siphasher::sip128::{Hash128, SipHasher13};
use subtle::ConstantTimeEq;

/// Tags of the keys seen in a fixed table of write-once slots (open addressing by the tag's
/// first word, probing a few slots): a lookup is plain loads, where a `RwLock` made every
/// request write the lock's counter, a cache line all the gateway's threads share.
pub struct SeenKeys {
    /// `None` if the operating system gave no random key: nothing is remembered then.
    hasher: Option<SipHasher13>,
    /// A power of two, at least twice the configured keys (none without keys).
    slots: Box<[OnceLock<Seen>]>,
}

struct Seen {
    first: u64,
    second: u64,
    team: usize,
}

/// Slots looked at from a tag's own: a table at most half full rarely needs more than two.
const PROBES: usize = 8;

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
        let slots = match hasher {
            Some(_) => keys.saturating_mul(2).next_power_of_two(),
            None => 0,
        };
        SeenKeys {
            hasher,
            slots: (0..slots).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The presented key's tag (none when the cache is off).
    pub fn tag(&self, key: &[u8]) -> Option<Hash128> {
        self.hasher.as_ref().map(|hasher| hasher.hash(key))
    }

    /// The slots a tag may be in, its own first.
    fn probe(&self, tag: &Hash128) -> impl Iterator<Item = &OnceLock<Seen>> {
        let mask = self.slots.len().wrapping_sub(1);
        // The low bits of the first word (truncating on 32-bit targets is as good).
        let start = tag.h1 as usize;
        (0..PROBES.min(self.slots.len())).filter_map(move |i| self.slots.get(start.wrapping_add(i) & mask))
    }

    /// The team of a key remembered with this tag. Which slots are looked at depends on the
    /// tag's first word, which is unpredictable without the SipHash key; the second word is
    /// then compared in constant time.
    pub fn team_of(&self, tag: &Hash128) -> Option<usize> {
        for slot in self.probe(tag) {
            // Slots fill in probe order and never empty: an empty one ends the search.
            let seen = slot.get()?;
            if seen.first == tag.h1 {
                return bool::from(seen.second.ct_eq(&tag.h2)).then_some(seen.team);
            }
        }
        None
    }

    /// Remembers the tag of a key whose SHA-256 matched `team`'s key, in the first free slot
    /// of its probe. Two keys whose tags share a first word (a chance of about 2⁻⁶⁴ a pair)
    /// keep the first; a tag whose slots are all taken is not remembered: such keys are
    /// always checked by their SHA-256.
    pub fn remember(&self, tag: Hash128, team: usize) {
        for slot in self.probe(&tag) {
            let seen = slot.get_or_init(|| Seen {
                first: tag.h1,
                second: tag.h2,
                team,
            });
            if seen.first == tag.h1 {
                return;
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|slot| slot.get().is_some()).count()
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
        assert_eq!(seen.len(), 1);
        // A fixed table: at most twice the keys' slots, whatever is remembered; every tag
        // remembered is found again, or else was never stored.
        let mut found = 0;
        for n in 0u8..64 {
            if let Some(tag) = seen.tag(&[n]) {
                seen.remember(tag, usize::from(n));
                found += usize::from(seen.team_of(&tag) == Some(usize::from(n)));
            }
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(found + 1, seen.len());
        // No keys, no cache.
        assert!(SeenKeys::new(0).tag(b"mg-a").is_none());
    }
}

//! The tenancy compiler: `(teams, access groups, API keys, aliases) -> (access table,
//! diagnostics)`. Pure, and shared like the routing compiler: the controller reports its
//! diagnostics as conditions, `validate` prints them, both gateways serve its table.

mod access;
pub mod money;
pub mod period;
mod selector;
#[cfg(test)]
mod tests;

pub use access::{compile_access, AccessInputs, Membership};
pub use money::{format_usd, parse_amount, usd, Price, Tokens, NANOS_PER_USD};

use crate::compiler::ObjectKey;
use crate::crd::{Limits, Period};

/// Label that marks a Secret as a client API key (the gateway's watch selects on it).
pub const API_KEY_LABEL: &str = "modelgate.dev/api-key";
/// The selector for [`API_KEY_LABEL`].
pub const API_KEY_SELECTOR: &str = "modelgate.dev/api-key=true";
/// Label naming the Team (in the Secret's namespace) an API key belongs to.
pub const TEAM_LABEL: &str = "modelgate.dev/team";
/// The `type` of API key Secrets.
pub const API_KEY_SECRET_TYPE: &str = "modelgate.dev/api-key";
/// The Secret data key holding `sha256:<hex>` of the key.
pub const KEY_HASH_FIELD: &str = "keyHash";

/// A client API key Secret as the compiler reads it: never the key, only its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeySecret {
    pub key: ObjectKey,
    /// The `modelgate.dev/team` label.
    pub team: Option<String>,
    /// The `keyHash` data value.
    pub key_hash: Option<Vec<u8>>,
}

/// What the gateways enforce: every team with its aliases, credits and limits, and every key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccessTable {
    /// Sorted by namespace and name.
    pub teams: Vec<TeamAccess>,
    pub keys: Vec<KeyDigest>,
    /// Sorted by namespace and name.
    pub groups: Vec<GroupAccess>,
}

impl AccessTable {
    pub fn team(&self, key: &ObjectKey) -> Option<&TeamAccess> {
        self.teams
            .binary_search_by(|t| t.key.cmp(key))
            .ok()
            .map(|i| &self.teams[i])
    }
}

/// One team, compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct TeamAccess {
    pub key: ObjectKey,
    pub display_name: Option<String>,
    pub organization: Option<String>,
    /// `spec.accessGroups` as written.
    pub groups: Vec<String>,
    /// The aliases the team may call, sorted.
    pub aliases: Vec<String>,
    pub credits: Option<CreditPolicy>,
    pub limits: Limits,
    /// How many valid keys belong to the team.
    pub keys: u32,
}

/// A team's credits: nano-dollars per period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditPolicy {
    pub allocated: i64,
    pub period: Period,
}

/// A key's SHA-256 digest and the team (index into [`AccessTable::teams`]) it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDigest {
    pub digest: [u8; 32],
    pub team: usize,
    pub secret: ObjectKey,
}

/// One access group, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupAccess {
    pub key: ObjectKey,
    pub description: Option<String>,
    /// The aliases it grants, sorted.
    pub aliases: Vec<String>,
}

/// The shared store's key of a team's usage in one period (`namespace/name`, period name):
/// a hash of `requests`, `prompt`, `completion`, `cached` and `spent` (nano-dollars). Gateways
/// write it, the controller reads it for `Team.status.usage`.
pub fn team_usage_key(team: &str, period: &str) -> String {
    format!("mg:t:{team}:u:{period}")
}

/// The shared store's key of an alias's totals (the same fields).
pub fn alias_usage_key(alias: &str) -> String {
    format!("mg:a:{alias}")
}

/// Parses `sha256:<64 hex digits>` into a digest.
pub fn parse_key_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.trim().strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// `sha256:<hex>` of a key, as stored in a key Secret.
pub fn key_hash(key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut text = String::with_capacity(71);
    text.push_str("sha256:");
    for byte in digest.iter() {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

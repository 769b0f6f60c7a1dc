//! What an import will write: providers (deduplicated by endpoint and credential), aliases in
//! input order, and every finding about the input.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use super::families::{Family, KeySource};
use super::{Finding, Level};
use crate::crd::{ModelAliasSpec, ProviderType};

/// One upstream endpoint with its credential, as the input describes it.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub family: Family,
    pub kind: ProviderType,
    pub base_url: Option<String>,
    pub key: Option<KeySource>,
    /// A fingerprint of a literal key, so that one key written five times is one provider.
    /// The key itself is never kept.
    pub literal_fingerprint: Option<u64>,
    pub azure_api_version: Option<String>,
    pub bedrock_region: Option<String>,
    /// Environment variables of static AWS credentials (access key id, secret access key).
    pub aws_keys: Option<(String, String)>,
    /// `timeouts.request`, as a duration (`30s`).
    pub timeout: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub drop_params: bool,
    /// A name the input gives the provider (Arch's `name`).
    pub name_hint: Option<String>,
}

impl Upstream {
    pub fn new(family: Family) -> Self {
        Upstream {
            family,
            kind: family.kind,
            base_url: family.base_url.map(str::to_string),
            key: None,
            literal_fingerprint: None,
            azure_api_version: None,
            bedrock_region: None,
            aws_keys: None,
            timeout: None,
            headers: BTreeMap::new(),
            drop_params: false,
            name_hint: None,
        }
    }

    /// Sets the key from a value in the input (a variable reference or a literal).
    pub fn set_key(&mut self, value: &str, location: &str) {
        // Local servers are often given a placeholder key; it is no credential.
        if matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "" | "none" | "null" | "dummy" | "not-needed"
        ) {
            self.key = None;
            return;
        }
        let source = super::families::key_source(value, location);
        if matches!(source, KeySource::Literal { .. }) {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            value.trim().hash(&mut hasher);
            self.literal_fingerprint = Some(hasher.finish());
        }
        self.key = Some(source);
    }

    /// Everything that makes two upstreams different providers (not where a key was found).
    fn identity(&self) -> String {
        let key = match (&self.key, self.literal_fingerprint) {
            (Some(KeySource::Env(name)), _) => format!("env:{name}"),
            (Some(KeySource::Literal { .. }), Some(f)) => format!("literal:{f:x}"),
            _ => "none".to_string(),
        };
        format!(
            "{}|{:?}|{key}|{:?}|{:?}|{:?}|{:?}|{:?}|{}",
            self.kind.as_str(),
            self.base_url,
            self.azure_api_version,
            self.bedrock_region,
            self.aws_keys,
            self.timeout,
            self.headers,
            self.drop_params
        )
    }
}

/// A provider the import will write.
#[derive(Debug)]
pub struct PlannedProvider {
    pub name: String,
    pub upstream: Upstream,
    pub models: BTreeSet<String>,
    identity: String,
}

/// An alias the import will write.
#[derive(Debug)]
pub struct PlannedAlias {
    /// The client-facing name.
    pub name: String,
    pub location: String,
    pub spec: ModelAliasSpec,
}

/// The import being built.
#[derive(Debug)]
pub struct Plan {
    pub file: PathBuf,
    pub findings: Vec<Finding>,
    pub providers: Vec<PlannedProvider>,
    pub aliases: Vec<PlannedAlias>,
    /// Access groups the input names (the alias admin API's `access_groups`): group → the
    /// client-facing names of its aliases, in input order.
    pub access_groups: BTreeMap<String, Vec<String>>,
}

impl Plan {
    pub fn new(file: &Path) -> Self {
        Plan {
            file: file.to_path_buf(),
            findings: Vec::new(),
            providers: Vec::new(),
            aliases: Vec::new(),
            access_groups: BTreeMap::new(),
        }
    }

    fn finding(&mut self, level: Level, location: &str, message: String) {
        self.findings.push(Finding {
            level,
            file: self.file.clone(),
            location: location.to_string(),
            message,
        });
    }

    /// Invalid input: the import fails.
    pub fn error(&mut self, location: &str, message: impl Into<String>) {
        self.finding(Level::Error, location, message.into());
    }

    /// Not carried over, or carried over approximately.
    pub fn warn(&mut self, location: &str, message: impl Into<String>) {
        self.finding(Level::Warning, location, message.into());
    }

    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.level == Level::Error)
    }

    /// The `provider/model` target for `model` served by `upstream`, adding the provider (or
    /// the model to an identical one) as needed.
    pub fn target(&mut self, upstream: &Upstream, model: &str) -> String {
        let identity = upstream.identity();
        if let Some(p) = self.providers.iter_mut().find(|p| p.identity == identity) {
            p.models.insert(model.to_string());
            return format!("{}/{model}", p.name);
        }
        let base = upstream
            .name_hint
            .as_deref()
            .map(kube_name)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| upstream.family.name.to_string());
        let mut name = base.clone();
        let mut n = 2;
        while self.providers.iter().any(|p| p.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        self.providers.push(PlannedProvider {
            name: name.clone(),
            upstream: upstream.clone(),
            models: BTreeSet::from([model.to_string()]),
            identity,
        });
        format!("{name}/{model}")
    }

    pub fn alias(&self, name: &str) -> Option<&PlannedAlias> {
        self.aliases.iter().find(|a| a.name == name)
    }

    pub fn alias_mut(&mut self, name: &str) -> Option<&mut PlannedAlias> {
        self.aliases.iter_mut().find(|a| a.name == name)
    }

    /// Adds an alias; a second alias of the same name is an error naming both places.
    pub fn add_alias(&mut self, name: &str, location: &str, spec: ModelAliasSpec) {
        if let Some(first) = self.alias(name) {
            let message = format!(
                "alias '{name}' is defined twice (first at {}); keep one definition",
                first.location
            );
            return self.error(location, message);
        }
        if !is_alias_name(name) {
            return self.error(
                location,
                format!(
                    "'{name}' cannot be a model alias: alias names may contain only letters, digits, '.', '-' and '_'"
                ),
            );
        }
        self.aliases.push(PlannedAlias {
            name: name.to_string(),
            location: location.to_string(),
            spec,
        });
    }

    /// Puts the alias `alias` (its client-facing name) in the access group `group`.
    pub fn grant(&mut self, group: &str, alias: &str) {
        let members = self.access_groups.entry(group.to_string()).or_default();
        if !members.iter().any(|m| m == alias) {
            members.push(alias.to_string());
        }
    }

    /// Reports every cycle of aliases naming each other (through targets or fallbacks).
    pub fn check_cycles(&mut self) {
        let index: HashMap<&str, usize> = self
            .aliases
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.as_str(), i))
            .collect();
        let edges: Vec<Vec<usize>> = self
            .aliases
            .iter()
            .map(|a| bare_targets(&a.spec).filter_map(|t| index.get(t).copied()).collect())
            .collect();
        let mut state = vec![0u8; self.aliases.len()]; // 0 new, 1 on the stack, 2 done
        let mut cycles: Vec<Vec<usize>> = Vec::new();
        for start in 0..self.aliases.len() {
            let mut stack: Vec<usize> = Vec::new();
            visit(start, &edges, &mut state, &mut stack, &mut cycles);
        }
        for cycle in cycles {
            let names: Vec<&str> = cycle.iter().map(|&i| self.aliases[i].name.as_str()).collect();
            let message = format!(
                "alias cycle: {} -> {}; an alias must end at a provider model",
                names.join(" -> "),
                names[0]
            );
            let location = self.aliases[cycle[0]].location.clone();
            self.error(&location, message);
        }
    }
}

fn visit(i: usize, edges: &[Vec<usize>], state: &mut [u8], stack: &mut Vec<usize>, cycles: &mut Vec<Vec<usize>>) {
    match state[i] {
        2 => return,
        1 => {
            if let Some(pos) = stack.iter().position(|&s| s == i) {
                cycles.push(stack[pos..].to_vec());
            }
            return;
        }
        _ => {}
    }
    state[i] = 1;
    stack.push(i);
    for &next in &edges[i] {
        visit(next, edges, state, stack, cycles);
    }
    stack.pop();
    state[i] = 2;
}

/// The targets of an alias written as bare names (other aliases or listed models).
fn bare_targets(spec: &ModelAliasSpec) -> impl Iterator<Item = &str> {
    let single = spec.target.as_deref();
    let split = spec.targets.iter().flatten().map(|t| t.target.as_str());
    let fallbacks = spec.fallbacks.iter().flatten().map(|f| f.target.as_str());
    single
        .into_iter()
        .chain(split)
        .chain(fallbacks)
        .filter(|t| !t.contains('/'))
}

/// Letters, digits, `.`, `-` and `_`, as `spec.alias` allows.
pub fn is_alias_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A Kubernetes object name made from any text: lowercase, `[a-z0-9.-]`, each dot-separated
/// label starting and ending with a letter or digit.
pub fn kube_name(text: &str) -> String {
    let lowered: String = text
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' })
        .collect();
    let labels: Vec<String> = lowered
        .split('.')
        .map(|label| {
            let mut collapsed = String::new();
            for c in label.chars() {
                if !(c == '-' && collapsed.ends_with('-')) {
                    collapsed.push(c);
                }
            }
            collapsed.trim_matches('-').to_string()
        })
        .filter(|l| !l.is_empty())
        .collect();
    let mut name = labels.join(".");
    name.truncate(253);
    name.trim_end_matches(['-', '.']).to_string()
}

/// Whole percentages in proportion to `shares`, adding up to exactly 100 (largest remainder).
/// All-zero shares split evenly.
pub fn percentages(shares: &[f64]) -> Vec<u32> {
    if shares.is_empty() {
        return Vec::new();
    }
    let total: f64 = shares.iter().filter(|s| s.is_finite() && **s > 0.0).sum();
    let exact: Vec<f64> = if total > 0.0 {
        shares
            .iter()
            .map(|s| {
                if s.is_finite() && *s > 0.0 {
                    s * 100.0 / total
                } else {
                    0.0
                }
            })
            .collect()
    } else {
        vec![100.0 / shares.len() as f64; shares.len()]
    };
    let mut whole: Vec<u32> = exact.iter().map(|e| e.floor() as u32).collect();
    let mut missing = 100u32.saturating_sub(whole.iter().sum());
    let mut order: Vec<usize> = (0..exact.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.partial_cmp(&ra).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b))
    });
    for i in order.into_iter().cycle() {
        if missing == 0 {
            break;
        }
        whole[i] += 1;
        missing -= 1;
    }
    whole
}

/// Seconds as a duration the CRDs accept (`30s`, `1500ms`).
pub fn seconds(value: f64) -> Option<String> {
    if !value.is_finite() || value <= 0.0 {
        return None;
    }
    let ms = (value * 1000.0).round() as u64;
    Some(if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    })
}

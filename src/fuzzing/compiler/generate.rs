//! Provider and alias sets from the fuzzer's bytes, with `arbitrary` over small name spaces
//! and weighted towards valid specs, so that references, chains, cycles, name conflicts and
//! listed-model lookups are common; [`super::policy`] adds fallbacks, retries, guardrails and
//! prices.

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::policy::Policy;
use crate::crd::{
    ApiKeySource, LLMProvider, LLMProviderSpec, ModelAlias, ModelAliasSpec, ProviderType, SecretKeyRef, Timeouts,
    WeightedTarget,
};

pub(super) const NAMESPACES: [&str; 2] = ["team-a", "team-b"];
const PROVIDERS: [&str; 3] = ["openai", "local", "mock"];
/// `m1` and `fast` are model ids too.
const ALIASES: [&str; 7] = ["a", "b", "c", "d", "e", "fast", "m1"];
const MODELS: [&str; 4] = ["m1", "m2", "fast", "org/m3"];
/// At most this many providers and aliases each.
pub(super) const MAX_OBJECTS: usize = 24;

/// A set of providers and aliases, in input order (earlier aliases are older unless they have
/// a creation time).
#[derive(Arbitrary, Debug)]
pub(super) struct CompilerCase {
    pub providers: Vec<Provider>,
    pub aliases: Vec<Alias>,
}

#[derive(Arbitrary, Debug)]
pub(super) struct Provider {
    namespace: Namespace,
    name: u8,
    kind: Kind,
    base_url: BaseUrl,
    key: Option<Key>,
    models: Option<Vec<Pick>>,
    header: Option<(String, String)>,
    timeout: Option<String>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Kind {
    Openai,
    Compatible,
    Mock,
}

/// Mostly the right one for the provider's type.
#[derive(Debug)]
enum BaseUrl {
    Fitting,
    None,
    Local,
    Https,
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Key {
    /// A Secret that exists (`true`) or not.
    Secret(bool),
    Env(String),
    Both,
    Neither,
}

#[derive(Arbitrary, Debug)]
pub(super) struct Alias {
    namespace: Namespace,
    name: Name,
    alias: Option<Name>,
    active: Option<bool>,
    hidden: Option<bool>,
    created: Option<u8>,
    target: Target,
    policy: Option<Box<Policy>>,
}

/// Mostly `team-a`, so that aliases find the providers they name.
#[derive(Debug, Clone, Copy)]
struct Namespace(&'static str);

/// Mostly one of [`ALIASES`].
#[derive(Debug)]
enum Name {
    Known(u8),
    Text(String),
}

/// Mostly a valid spec: one target, or a split whose weights add up to 100.
#[derive(Debug)]
enum Target {
    One(Ref),
    /// Legs with weights; `true` adjusts the last weight so they add up to 100.
    Split(Vec<(Ref, u8)>, bool),
    Both(Ref, Vec<(Ref, u8)>),
    Neither,
}

/// Mostly an alias, a provider's model or a listed model.
#[derive(Debug)]
pub(super) enum Ref {
    Alias(u8),
    ProviderModel(u8, Pick),
    Model(Pick),
    Text(String),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub(super) struct Pick(u8);

/// Index of a choice, each as likely as its weight.
pub(super) fn weighted(u: &mut Unstructured<'_>, weights: &[u32]) -> arbitrary::Result<usize> {
    let total: u32 = weights.iter().sum();
    let mut roll = u.int_in_range(0..=total - 1)?;
    for (i, &w) in weights.iter().enumerate() {
        if roll < w {
            return Ok(i);
        }
        roll -= w;
    }
    Ok(weights.len() - 1)
}

impl<'a> Arbitrary<'a> for Namespace {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Namespace(NAMESPACES[weighted(u, &[8, 2])?]))
    }
}

impl<'a> Arbitrary<'a> for BaseUrl {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match weighted(u, &[16, 1, 1, 1, 2])? {
            0 => BaseUrl::Fitting,
            1 => BaseUrl::None,
            2 => BaseUrl::Local,
            3 => BaseUrl::Https,
            _ => BaseUrl::Text(u.arbitrary()?),
        })
    }
}

impl<'a> Arbitrary<'a> for Name {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match weighted(u, &[15, 1])? {
            0 => Name::Known(u.arbitrary()?),
            _ => Name::Text(u.arbitrary()?),
        })
    }
}

impl<'a> Arbitrary<'a> for Target {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match weighted(u, &[10, 6, 1, 1, 1])? {
            0 => Target::One(u.arbitrary()?),
            1 => Target::Split(u.arbitrary()?, true),
            2 => Target::Split(u.arbitrary()?, false),
            3 => Target::Both(u.arbitrary()?, u.arbitrary()?),
            _ => Target::Neither,
        })
    }
}

impl<'a> Arbitrary<'a> for Ref {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match weighted(u, &[8, 6, 3, 1])? {
            0 => Ref::Alias(u.arbitrary()?),
            1 => Ref::ProviderModel(u.arbitrary()?, u.arbitrary()?),
            2 => Ref::Model(u.arbitrary()?),
            _ => Ref::Text(u.arbitrary()?),
        })
    }
}

pub(super) fn pick<T: Copy, const N: usize>(names: [T; N], at: u8) -> T {
    names[usize::from(at) % N]
}

impl Name {
    fn text(&self) -> String {
        match self {
            Name::Known(at) => pick(ALIASES, *at).to_string(),
            Name::Text(text) => text.clone(),
        }
    }
}

impl Ref {
    pub(super) fn text(&self) -> String {
        match self {
            Ref::Alias(at) => pick(ALIASES, *at).to_string(),
            Ref::ProviderModel(p, m) => format!("{}/{}", pick(PROVIDERS, *p), pick(MODELS, m.0)),
            Ref::Model(m) => pick(MODELS, m.0).to_string(),
            Ref::Text(text) => text.clone(),
        }
    }
}

impl Provider {
    pub(super) fn build(&self) -> LLMProvider {
        let provider_type = match self.kind {
            Kind::Openai => ProviderType::Openai,
            Kind::Compatible => ProviderType::OpenaiCompatible,
            Kind::Mock => ProviderType::Mock,
        };
        let base_url = match (&self.base_url, self.kind) {
            (BaseUrl::Fitting, Kind::Openai | Kind::Mock) | (BaseUrl::None, _) => None,
            (BaseUrl::Fitting, Kind::Compatible) => Some("http://vllm.ml.svc:8000/v1/".to_string()),
            (BaseUrl::Local, _) => Some("http://127.0.0.1:11434/v1".to_string()),
            (BaseUrl::Https, _) => Some("https://api.example.test/v1".to_string()),
            (BaseUrl::Text(text), _) => Some(text.clone()),
        };
        let secret = |name: &str| ApiKeySource {
            secret_ref: Some(SecretKeyRef {
                name: name.to_string(),
                key: "apiKey".to_string(),
            }),
            env: None,
        };
        let api_key = self.key.as_ref().map(|key| match key {
            Key::Secret(true) => secret("keys"),
            Key::Secret(false) => secret("missing"),
            Key::Env(var) => ApiKeySource {
                secret_ref: None,
                env: Some(var.clone()),
            },
            Key::Both => ApiKeySource {
                env: Some("KEY".to_string()),
                ..secret("keys")
            },
            Key::Neither => ApiKeySource {
                secret_ref: None,
                env: None,
            },
        });
        let spec = LLMProviderSpec {
            provider_type,
            base_url,
            api_key,
            models: self
                .models
                .as_ref()
                .map(|models| models.iter().map(|m| pick(MODELS, m.0).to_string()).collect()),
            headers: self.header.clone().map(|(k, v)| BTreeMap::from([(k, v)])),
            timeouts: self.timeout.clone().map(|t| Timeouts {
                connect: Some(t),
                ..Timeouts::default()
            }),
            anthropic: None,
            azure: None,
            bedrock: None,
            tls: None,
            drop_unsupported_params: None,
        };
        let mut provider = LLMProvider::new(pick(PROVIDERS, self.name), spec);
        provider.metadata.namespace = Some(self.namespace.0.to_string());
        provider
    }
}

impl Alias {
    pub(super) fn build(&self) -> ModelAlias {
        let legs = |legs: &[(Ref, u8)]| -> Vec<WeightedTarget> {
            legs.iter()
                .take(8)
                .map(|(r, w)| WeightedTarget {
                    target: r.text(),
                    weight: u32::from(*w),
                })
                .collect()
        };
        let (target, targets) = match &self.target {
            Target::One(r) => (Some(r.text()), None),
            Target::Split(split, exact) => {
                let mut split = legs(split);
                if *exact {
                    let mut left = 100;
                    for leg in &mut split {
                        leg.weight = leg.weight.min(left);
                        left -= leg.weight;
                    }
                    if let Some(last) = split.last_mut() {
                        last.weight += left;
                    }
                }
                (None, Some(split))
            }
            Target::Both(r, split) => (Some(r.text()), Some(legs(split))),
            Target::Neither => (None, None),
        };
        let mut spec = ModelAliasSpec {
            alias: self.alias.as_ref().map(Name::text),
            description: None,
            active: self.active,
            hidden: self.hidden,
            target,
            targets,
            load_balancing: None,
            fallbacks: None,
            retry: None,
            timeouts: None,
            outlier_detection: None,
            guardrails: None,
            pricing: None,
        };
        if let Some(policy) = &self.policy {
            let built = policy.build();
            spec.load_balancing = built.load_balancing;
            spec.fallbacks = built.fallbacks;
            spec.retry = built.retry;
            spec.timeouts = built.timeouts;
            spec.outlier_detection = built.outlier_detection;
            spec.guardrails = built.guardrails;
            spec.pricing = built.pricing;
        }
        let mut alias = ModelAlias::new(&self.name.text(), spec);
        alias.metadata.namespace = Some(self.namespace.0.to_string());
        alias.metadata.creation_timestamp = self
            .created
            .map(|s| Time(jiff::Timestamp::from_second(1_700_000_000 + i64::from(s % 4)).unwrap_or_default()));
        alias
    }
}

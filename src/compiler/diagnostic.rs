//! What the compiler says about each object: the object, the field, and what to do.

use std::fmt;

/// The kinds of object the compiler reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    LLMProvider,
    ModelAlias,
    AccessGroup,
    Team,
    /// A client API key (a Secret of type `modelgate.dev/api-key`).
    Secret,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::LLMProvider => "LLMProvider",
            ObjectKind::ModelAlias => "ModelAlias",
            ObjectKind::AccessGroup => "AccessGroup",
            ObjectKind::Team => "Team",
            ObjectKind::Secret => "Secret",
        }
    }
}

/// `namespace/name` of a namespaced object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of an object (`default` when a manifest names no namespace, as kubectl does).
    pub fn of(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        ObjectKey::new(
            metadata.namespace.as_deref().unwrap_or("default"),
            metadata.name.as_deref().unwrap_or_default(),
        )
    }

    /// Parses `namespace/name`.
    pub fn parse(text: &str) -> Option<Self> {
        let (namespace, name) = text.split_once('/')?;
        (!namespace.is_empty() && !name.is_empty() && !name.contains('/')).then(|| ObjectKey::new(namespace, name))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A kind plus a key: the object a diagnostic is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: ObjectKind,
    pub key: ObjectKey,
}

impl ObjectRef {
    pub fn provider(key: ObjectKey) -> Self {
        ObjectRef {
            kind: ObjectKind::LLMProvider,
            key,
        }
    }
    pub fn alias(key: ObjectKey) -> Self {
        ObjectRef {
            kind: ObjectKind::ModelAlias,
            key,
        }
    }
    pub fn new(kind: ObjectKind, key: ObjectKey) -> Self {
        ObjectRef { kind, key }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.key)
    }
}

/// Errors stop an object from being served as written; warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

/// Which status condition a problem belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionKind {
    /// The object itself is wrong (syntax, rules, name conflicts, cycles).
    Accepted,
    /// Something it points at is missing or unusable.
    ResolvedRefs,
    /// Informational: neither of the above.
    None,
}

/// Machine-readable cause of a diagnostic; `as_str` is the CamelCase condition reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The object could not be read (YAML or field types).
    Unreadable,
    /// A field breaks a rule of the API (names, exactly-one-of, weights, URLs, durations).
    InvalidSpec,
    /// Another, older ModelAlias already claims this alias name.
    AliasConflict,
    /// Aliases refer to each other in a circle.
    AliasCycle,
    /// An alias chain is longer than the limit.
    ChainTooDeep,
    /// `<provider>/<model>` names a provider that does not exist in the namespace.
    ProviderNotFound,
    /// The target provider exists but cannot be used.
    ProviderNotReady,
    /// A bare target is neither an alias nor a listed model.
    TargetNotFound,
    /// A bare model id is listed by more than one provider.
    AmbiguousTarget,
    /// The provider's `models` allow-list does not include the model.
    ModelNotServed,
    /// The target alias cannot be served.
    TargetAliasInvalid,
    /// The API key's Secret, Secret key or environment variable is missing or unusable.
    KeyNotFound,
    /// The Secret or key of `tls.caSecretRef` is missing.
    CaNotFound,
    /// The CA certificate in `tls.caSecretRef` is not usable (not PEM, no certificate, a
    /// private key) or, as a warning, expired or about to.
    InvalidCa,
    /// The alias routes through a disabled alias, so it is disabled too.
    DisabledByChain,
    /// The current spec is broken; the last accepted route keeps serving.
    ServingLastGood,
    /// The base URL's host is an address or name that gateways refuse to connect to.
    UpstreamBlocked,
    /// An AccessGroup names an alias no ModelAlias claims.
    AliasNotFound,
    /// A Team names an AccessGroup that does not exist in its namespace.
    AccessGroupNotFound,
    /// An API key Secret names a Team that does not exist in its namespace.
    TeamNotFound,
    /// An API key Secret holds the same key as another one.
    KeyConflict,
}

impl Reason {
    /// The CamelCase reason used in status conditions and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unreadable => "Unreadable",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::AliasConflict => "AliasConflict",
            Reason::AliasCycle => "AliasCycle",
            Reason::ChainTooDeep => "ChainTooDeep",
            Reason::ProviderNotFound => "ProviderNotFound",
            Reason::ProviderNotReady => "ProviderNotReady",
            Reason::TargetNotFound => "TargetNotFound",
            Reason::AmbiguousTarget => "AmbiguousTarget",
            Reason::ModelNotServed => "ModelNotServed",
            Reason::TargetAliasInvalid => "TargetAliasInvalid",
            Reason::KeyNotFound => "KeyNotFound",
            Reason::CaNotFound => "CANotFound",
            Reason::InvalidCa => "InvalidCA",
            Reason::DisabledByChain => "DisabledByChain",
            Reason::ServingLastGood => "ServingLastGood",
            Reason::UpstreamBlocked => "UpstreamBlocked",
            Reason::AliasNotFound => "AliasNotFound",
            Reason::AccessGroupNotFound => "AccessGroupNotFound",
            Reason::TeamNotFound => "TeamNotFound",
            Reason::KeyConflict => "KeyConflict",
        }
    }

    /// The condition whose status this reason sets to False.
    pub fn condition(self) -> ConditionKind {
        match self {
            Reason::Unreadable
            | Reason::InvalidSpec
            | Reason::AliasConflict
            | Reason::AliasCycle
            | Reason::ChainTooDeep
            | Reason::KeyConflict => ConditionKind::Accepted,
            Reason::ProviderNotFound
            | Reason::ProviderNotReady
            | Reason::TargetNotFound
            | Reason::AmbiguousTarget
            | Reason::ModelNotServed
            | Reason::TargetAliasInvalid
            | Reason::KeyNotFound
            | Reason::CaNotFound
            | Reason::InvalidCa
            | Reason::AliasNotFound
            | Reason::AccessGroupNotFound
            | Reason::TeamNotFound => ConditionKind::ResolvedRefs,
            Reason::DisabledByChain | Reason::ServingLastGood | Reason::UpstreamBlocked => ConditionKind::None,
        }
    }
}

/// One problem with one object, phrased so its reader knows what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub object: ObjectRef,
    /// JSON path of the offending field, e.g. `spec.targets[1].target`.
    pub field: String,
    pub severity: Severity,
    pub reason: Reason,
    pub message: String,
}

impl Diagnostic {
    pub fn error(object: &ObjectRef, field: impl Into<String>, reason: Reason, message: impl Into<String>) -> Self {
        Diagnostic {
            object: object.clone(),
            field: field.into(),
            severity: Severity::Error,
            reason,
            message: message.into(),
        }
    }

    pub fn warning(object: &ObjectRef, field: impl Into<String>, reason: Reason, message: impl Into<String>) -> Self {
        Diagnostic {
            object: object.clone(),
            field: field.into(),
            severity: Severity::Warning,
            reason,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `Kind namespace/name: field: message`, the form `modelgate validate` prints after the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        write!(f, "{}: {}{}: {}", self.object, level, self.field, self.message)
    }
}

//! Everything the controller knows, compiled once per change and shared by every reconcile.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::runtime::reflector::Store;

use super::gateways::{GatewayView, Gateways};
use super::metrics::Kind;
use super::references::References;
use super::status::{alias_status, group_status, provider_status, team_status, Env, TeamFigures};
use super::written::fingerprint;
use crate::compiler::{compile, Compiled, Diagnostic, Inputs, ObjectKey, ObjectRef, Route, SecretsAndEnv};
use crate::crd::{
    condition_type, AccessGroup, AccessGroupStatus, LLMProvider, LLMProviderStatus, ModelAlias, ModelAliasStatus, Team,
    TeamStatus,
};
use crate::kubernetes::{resource_version, secret_data, wait_synced, Changes, Synced};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The reflector stores, the compiled view of them, and the gateway replicas.
pub struct World {
    pub providers: Store<LLMProvider>,
    pub aliases: Store<ModelAlias>,
    pub secrets: Store<Secret>,
    pub teams: Store<Team>,
    pub groups: Store<AccessGroup>,
    pub keys: Store<Secret>,
    pub changes: Changes,
    synced: [Synced; 6],
    snapshots: watch::Sender<Option<Arc<Snapshot>>>,
    pub gateways: Gateways,
    pub references: References,
    /// How long an object waits for what it refers to before it is Stalled.
    pub stall_after: Duration,
}

/// Whether an object's conditions say every gateway serves its current generation.
fn programmed(conditions: &[Condition], generation: Option<i64>) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == condition_type::PROGRAMMED && c.status == "True" && c.observed_generation == generation)
}

/// One compilation of the whole world, shared by reconciles.
pub struct Snapshot {
    pub version: u64,
    pub compiled: Compiled,
}

impl Snapshot {
    fn new(version: u64, compiled: Compiled) -> Self {
        Snapshot { version, compiled }
    }

    /// The route an alias object owns, if it compiled: the route under the alias's own name
    /// (`spec.alias`, else `metadata.name`), when it came from this object. No index by object
    /// is kept: at 10,000 aliases it cost 2 MB.
    pub fn route_of(&self, alias: &ModelAlias, key: &ObjectKey) -> Option<&Route> {
        self.compiled
            .table
            .routes
            .get(crate::compiler::claimed_name(alias, key))
            .filter(|route| &route.source == key)
    }

    /// An object's diagnostics: a run of `compiled.diagnostics`, which is sorted by object.
    pub fn diagnostics_of(&self, object: &ObjectRef) -> &[Diagnostic] {
        let all = self.compiled.diagnostics.as_slice();
        let start = all.partition_point(|d| &d.object < object);
        let len = all[start..].partition_point(|d| &d.object == object);
        &all[start..start + len]
    }

    /// The status this compilation gives an alias, in `env`, with its usage summary when
    /// known.
    pub fn alias_status(
        &self,
        alias: &ModelAlias,
        env: &Env,
        references: &References,
        usage: &super::usage::UsageBook,
    ) -> ModelAliasStatus {
        let key = ObjectKey::of(&alias.metadata);
        let object = ObjectRef::alias(key.clone());
        let generation = alias.metadata.generation;
        // Gateways matter only while a route published for this generation is not served
        // everywhere yet. Its reference is forgotten once the object's written status says it
        // is served, not when a status computed here does: the gateways' view and the object's
        // own watch can each compute one before it is written, and a reference forgotten by
        // the first would be retaken by the second at the object's newer version, which the
        // gateways serving the route have not read (`Programmed` then waited for them).
        let said = alias
            .status
            .as_ref()
            .is_some_and(|s| programmed(&s.conditions, generation));
        if said {
            references.done(Kind::ModelAlias, &key);
        }
        let published = alias
            .status
            .as_ref()
            .filter(|_| !said)
            .and_then(|s| s.resolved.as_ref())
            .filter(|r| Some(r.generation) == generation);
        let reference =
            published.map(|r| references.of(Kind::ModelAlias, &key, fingerprint(r), resource_version(alias)));
        let route = self.route_of(alias, &key);
        let mut status = alias_status(alias, route, self.diagnostics_of(&object), env, reference);
        if let Some(summary) = route.and_then(|r| usage.alias(&r.alias)) {
            status.usage = Some(summary);
        }
        status
    }

    /// The status this compilation gives a Team, with its usage when known.
    pub fn team_status(&self, team: &Team, figures: Option<&TeamFigures>, now: &Time) -> TeamStatus {
        let key = ObjectKey::of(&team.metadata);
        let object = ObjectRef::new(crate::compiler::ObjectKind::Team, key.clone());
        team_status(
            team,
            self.compiled.access.team(&key),
            self.diagnostics_of(&object),
            figures,
            now,
        )
    }

    /// The status this compilation gives an AccessGroup.
    pub fn group_status(&self, group: &AccessGroup, now: &Time) -> AccessGroupStatus {
        let key = ObjectKey::of(&group.metadata);
        let object = ObjectRef::new(crate::compiler::ObjectKind::AccessGroup, key.clone());
        let compiled = self.compiled.access.groups.iter().find(|g| g.key == key);
        group_status(group, compiled, self.diagnostics_of(&object), now)
    }

    /// The status this compilation gives a provider, in `env`.
    pub fn provider_status(&self, provider: &LLMProvider, env: &Env, references: &References) -> LLMProviderStatus {
        let key = ObjectKey::of(&provider.metadata);
        let object = ObjectRef::provider(key.clone());
        let generation = provider.metadata.generation;
        let done = provider
            .status
            .as_ref()
            .is_some_and(|s| programmed(&s.conditions, generation));
        // As for an alias: forgotten once the object says it is served.
        if done {
            references.done(Kind::LLMProvider, &key);
        }
        let reference = (!done).then(|| {
            let published = u64::try_from(generation.unwrap_or(0)).unwrap_or(0);
            references.of(Kind::LLMProvider, &key, published, resource_version(provider))
        });
        provider_status(
            provider,
            self.compiled.table.providers.get(&key),
            self.diagnostics_of(&object),
            env,
            reference,
        )
    }
}

/// The watched objects a compilation reads: the routing kinds and the tenancy kinds.
pub struct Stores {
    pub providers: Store<LLMProvider>,
    pub aliases: Store<ModelAlias>,
    pub secrets: Store<Secret>,
    pub teams: Store<Team>,
    pub groups: Store<AccessGroup>,
    pub keys: Store<Secret>,
}

impl World {
    pub fn new(
        stores: Stores,
        synced: [Synced; 6],
        changes: Changes,
        gateways: Gateways,
        stall_after: Duration,
    ) -> Self {
        World {
            providers: stores.providers,
            aliases: stores.aliases,
            secrets: stores.secrets,
            teams: stores.teams,
            groups: stores.groups,
            keys: stores.keys,
            changes,
            synced,
            snapshots: watch::channel(None).0,
            gateways,
            references: References::default(),
            stall_after,
        }
    }

    /// Waits until every store holds its initial list: before that, missing objects would be
    /// reported as errors (and every alias as served by no gateway).
    pub async fn wait_ready(&self) {
        wait_synced(&self.synced).await;
        self.gateways.wait_ready().await;
    }

    /// The gateway replicas running now.
    pub fn gateway_view(&self) -> Arc<GatewayView> {
        self.gateways.view.borrow().clone()
    }

    /// A compilation that includes every change seen so far. Many reconciles during a burst
    /// of changes share one compilation instead of each compiling the world again.
    pub async fn snapshot(&self) -> Option<Arc<Snapshot>> {
        let wanted = self.changes.version();
        let mut snapshots = self.snapshots.subscribe();
        let ready = snapshots
            .wait_for(|s| s.as_ref().is_some_and(|s| s.version >= wanted))
            .await
            .ok()?;
        ready.clone()
    }

    /// New compilations as they are published.
    pub fn snapshots(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.snapshots.subscribe()
    }

    /// Compiles the world after every change, coalescing bursts (a `kubectl apply` of many
    /// objects) into one compilation, off the async threads.
    pub async fn compile_on_change(self: Arc<Self>) {
        let mut changed = self.changes.subscribe();
        self.wait_ready().await;
        loop {
            let version = self.changes.version();
            let world = self.clone();
            let Ok(compiled) = tokio::task::spawn_blocking(move || world.compile()).await else {
                return;
            };
            self.snapshots
                .send_replace(Some(Arc::new(Snapshot::new(version, compiled))));
            if changed.changed().await.is_err() {
                return;
            }
            // Gather the rest of a burst, but compile at least every MAX_WAIT while changes
            // keep coming (a long stream of creates never leaves a pause).
            let deadline = tokio::time::Instant::now() + MAX_WAIT;
            while tokio::time::Instant::now() < deadline
                && tokio::time::timeout(COALESCE, changed.changed())
                    .await
                    .is_ok_and(|r| r.is_ok())
            {}
        }
    }

    fn compile(&self) -> Compiled {
        // The stores' own objects (shared, not copied), in a stable order.
        let mut providers = self.providers.state();
        providers.sort_by(|a, b| by_key(&a.metadata, &b.metadata));
        let mut aliases = self.aliases.state();
        aliases.sort_by(|a, b| by_key(&a.metadata, &b.metadata));
        let secrets = secret_data(&self.secrets);
        // The controller cannot see the gateway's environment: `env` keys are not checked.
        let credentials = SecretsAndEnv {
            secrets: &secrets,
            env: None,
            view: crate::compiler::SecretView::Labelled,
        };
        let mut compiled = compile(&Inputs {
            providers: &providers,
            aliases: &aliases,
            credentials: &credentials,
            unreadable: &[],
            previous: None,
        });
        compiled.add_access(
            &self.teams.state(),
            &self.groups.state(),
            &crate::kubernetes::tenancy::api_keys(&self.keys),
            &aliases,
            crate::compiler::tenancy::Membership::Spec,
        );
        compiled
    }
}

fn by_key(a: &ObjectMeta, b: &ObjectMeta) -> std::cmp::Ordering {
    (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name))
}

/// How long without a further change ends a burst.
const COALESCE: Duration = Duration::from_millis(20);
/// The longest a compilation waits for a burst to end.
const MAX_WAIT: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::Reason;

    #[test]
    fn route_of_finds_the_route_an_alias_owns_and_none_for_a_loser() {
        let yaml = r#"
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: mock, namespace: a}
spec: {type: mock}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: mock, namespace: b}
spec: {type: mock}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: chat, namespace: a, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {target: mock/one}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: chat, namespace: b, creationTimestamp: "2026-01-02T00:00:00Z"}
spec: {target: mock/two}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: renamed, namespace: a}
spec: {alias: Fast.V1, target: mock/three}
"#;
        let (manifests, compiled) = crate::compiler::compile_text(yaml);
        let snapshot = Snapshot::new(1, compiled);
        let model = |i: usize| {
            let alias = &manifests.aliases[i];
            snapshot
                .route_of(alias, &ObjectKey::of(&alias.metadata))
                .map(|route| route.targets[0].model.clone())
        };
        assert_eq!(model(0).as_deref(), Some("one"), "the older alias owns 'chat'");
        assert_eq!(model(1), None, "the younger one owns no route");
        assert_eq!(model(2).as_deref(), Some("three"), "found under spec.alias");
    }

    /// The gateways' view and the object's own watch can each compute an alias's status before
    /// the first one is written: both must measure the gateways against the same version.
    #[test]
    fn programmed_computed_twice_before_it_is_written_waits_for_no_gateway_that_serves_the_route() {
        use crate::controller::status::DEFAULT_STALL_AFTER;
        use crate::controller::usage::UsageBook;

        let yaml = r#"
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: mock, namespace: ml, generation: 1}
spec: {type: mock}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: chat, namespace: ml, generation: 2, resourceVersion: "98"}
spec: {target: mock/m2}
"#;
        let (mut manifests, compiled) = crate::compiler::compile_text(yaml);
        let snapshot = Snapshot::new(1, compiled);
        let (references, usage) = (References::default(), UsageBook::default());
        let now = Time("2026-12-05T10:00:00Z".parse().expect("timestamp"));
        let view = |one: u64, two: u64| GatewayView::at_versions(&[("one", one), ("two", two)]);
        let mut status_with = |gateways: &GatewayView, written_at: Option<u64>| {
            let alias = &manifests.aliases[0];
            let env = Env {
                now: &now,
                stall_after: DEFAULT_STALL_AFTER,
                gateways,
            };
            let status = snapshot.alias_status(alias, &env, &references, &usage);
            let programmed = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Programmed")
                .map(|c| c.message.clone());
            if let Some(version) = written_at {
                manifests.aliases[0].status = Some(status);
                manifests.aliases[0].metadata.resource_version = Some(version.to_string());
            }
            programmed.unwrap_or_default()
        };
        // The route is published (written at 100); `one` reads it, `two` lags; that is written
        // at 102.
        status_with(&view(90, 90), Some(100));
        assert_eq!(
            status_with(&view(100, 95), Some(102)),
            "served by 1/2 gateways at generation 2; waiting for two"
        );
        // `two` catches up, reading 102; `one` stays at 100, which carries the route. Two
        // computations before the write lands both say so.
        for _ in 0..2 {
            assert_eq!(
                status_with(&view(100, 102), None),
                "served by 2/2 gateways at generation 2"
            );
        }
        // Written at 104, it stays so; the reference is forgotten once the object says it.
        status_with(&view(100, 102), Some(104));
        assert_eq!(
            status_with(&view(100, 102), None),
            "served by 2/2 gateways at generation 2"
        );
        assert!(references.pending(Kind::ModelAlias, |_| true).is_empty());
    }

    #[test]
    fn diagnostics_of_finds_each_objects_run() {
        let object = |name: &str| ObjectRef::alias(ObjectKey::new("ml", name));
        let mut diagnostics = vec![
            Diagnostic::error(&object("b"), "spec.target", Reason::InvalidSpec, "b1"),
            Diagnostic::error(&object("a"), "spec", Reason::InvalidSpec, "a1"),
            Diagnostic::error(&object("b"), "spec", Reason::InvalidSpec, "b2"),
            Diagnostic::error(
                &ObjectRef::provider(ObjectKey::new("ml", "b")),
                "spec",
                Reason::InvalidSpec,
                "p",
            ),
            Diagnostic::error(&object("d"), "spec", Reason::InvalidSpec, "d1"),
        ];
        diagnostics.sort_by(|a, b| (&a.object, a.severity, &a.field).cmp(&(&b.object, b.severity, &b.field)));
        let snapshot = Snapshot::new(
            1,
            Compiled {
                table: Default::default(),
                diagnostics: diagnostics.clone(),
                access: Default::default(),
            },
        );
        for target in [object("a"), object("b"), object("c"), object("d"), object("e")] {
            let want: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.object == target).collect();
            let got: Vec<&Diagnostic> = snapshot.diagnostics_of(&target).iter().collect();
            assert_eq!(got, want, "{target:?}");
        }
        assert_eq!(snapshot.diagnostics_of(&object("b")).len(), 2);
    }
}

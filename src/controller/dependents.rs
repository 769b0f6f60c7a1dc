//! Objects whose status changes without an event of their own.
//!
//! Cross-object changes (a provider, a Secret, another alias) change other objects' status:
//! after each compilation, exactly the objects whose status would now differ are queued. When
//! the gateway replicas change (one caught up, started, stopped or expired), only the objects
//! still waiting for the gateways can change, and those are queued once status writes pause:
//! turning `Programmed` True is news, but never more urgent than publishing the routes of a
//! bulk apply still in progress.

use std::sync::Arc;

use kube::runtime::reflector::ObjectRef as KubeRef;
use tokio::sync::mpsc;

use super::metrics::Kind;
use super::pacing::Pacing;
use super::reconcile;
use super::status::Env;
use super::world::{Snapshot, World};
use crate::crd::{LLMProvider, ModelAlias};

/// Runs both triggers until the controller stops.
pub async fn trigger(
    world: Arc<World>,
    aliases: mpsc::Sender<KubeRef<ModelAlias>>,
    providers: mpsc::Sender<KubeRef<LLMProvider>>,
    pacing: Arc<Pacing>,
) {
    world.wait_ready().await;
    tokio::join!(
        on_compile(world.clone(), aliases.clone(), providers.clone()),
        on_gateways(world, aliases, providers, pacing),
    );
}

async fn on_compile(
    world: Arc<World>,
    aliases: mpsc::Sender<KubeRef<ModelAlias>>,
    providers: mpsc::Sender<KubeRef<LLMProvider>>,
) {
    let mut snapshots = world.snapshots();
    // A compilation published before this subscription counts too.
    snapshots.mark_changed();
    loop {
        if snapshots.changed().await.is_err() {
            return;
        }
        let Some(snapshot) = snapshots.borrow_and_update().clone() else {
            continue;
        };
        let changed = queue_changed(
            &world,
            &snapshot,
            world.aliases.state(),
            world.providers.state(),
            (&aliases, &providers),
        );
        if changed.await.is_err() {
            return;
        }
    }
}

async fn on_gateways(
    world: Arc<World>,
    aliases: mpsc::Sender<KubeRef<ModelAlias>>,
    providers: mpsc::Sender<KubeRef<LLMProvider>>,
    pacing: Arc<Pacing>,
) {
    let mut views = world.gateways.view.clone();
    loop {
        if views.changed().await.is_err() {
            return;
        }
        pacing.pause().await;
        let Some(snapshot) = world.snapshots().borrow().clone() else {
            continue;
        };
        let find_alias =
            |key: &crate::compiler::ObjectKey| world.aliases.get(&KubeRef::new(&key.name).within(&key.namespace));
        let find_provider =
            |key: &crate::compiler::ObjectKey| world.providers.get(&KubeRef::new(&key.name).within(&key.namespace));
        let references = &world.references;
        let pending_aliases = references.pending(Kind::ModelAlias, |key| find_alias(key).is_some());
        let pending_providers = references.pending(Kind::LLMProvider, |key| find_provider(key).is_some());
        let changed = queue_changed(
            &world,
            &snapshot,
            pending_aliases.iter().filter_map(find_alias).collect(),
            pending_providers.iter().filter_map(find_provider).collect(),
            (&aliases, &providers),
        );
        if changed.await.is_err() {
            return;
        }
    }
}

/// Queues those of `alias_list` and `provider_list` whose status would now differ. An error
/// means the controller is stopping.
async fn queue_changed(
    world: &World,
    snapshot: &Snapshot,
    alias_list: Vec<Arc<ModelAlias>>,
    provider_list: Vec<Arc<LLMProvider>>,
    (aliases, providers): (&mpsc::Sender<KubeRef<ModelAlias>>, &mpsc::Sender<KubeRef<LLMProvider>>),
) -> Result<(), ()> {
    let now = reconcile::now();
    let gateways = world.gateway_view();
    let env = Env {
        now: &now,
        stall_after: world.stall_after,
        gateways: &gateways,
    };
    let references = &world.references;
    for alias in alias_list {
        let desired = snapshot.alias_status(&alias, &env, references);
        if alias.status.as_ref() != Some(&desired) {
            aliases.send(KubeRef::from_obj(alias.as_ref())).await.map_err(|_| ())?;
        }
    }
    for provider in provider_list {
        let desired = snapshot.provider_status(&provider, &env, references);
        if provider.status.as_ref() != Some(&desired) {
            providers
                .send(KubeRef::from_obj(provider.as_ref()))
                .await
                .map_err(|_| ())?;
        }
    }
    Ok(())
}

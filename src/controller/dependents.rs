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
use super::reconcile::{self, Context};
use super::status::Env;
use super::world::{Snapshot, World};
use crate::crd::{AccessGroup, LLMProvider, ModelAlias, Team};

/// Where reconciles are queued, by kind.
pub struct Queues {
    pub aliases: mpsc::Sender<KubeRef<ModelAlias>>,
    pub providers: mpsc::Sender<KubeRef<LLMProvider>>,
    pub teams: mpsc::Sender<KubeRef<Team>>,
    pub groups: mpsc::Sender<KubeRef<AccessGroup>>,
}

/// Runs both triggers until the controller stops.
pub async fn trigger(world: Arc<World>, ctx: Arc<Context>, queues: Queues, pacing: Arc<Pacing>) {
    world.wait_ready().await;
    let (aliases, providers) = (queues.aliases.clone(), queues.providers.clone());
    tokio::join!(
        on_compile(world.clone(), ctx.clone(), queues),
        on_gateways(world, aliases, providers, pacing, &ctx.usage),
    );
}

async fn on_compile(world: Arc<World>, ctx: Arc<Context>, queues: Queues) {
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
            (&queues.aliases, &queues.providers),
            &ctx.usage,
        );
        if changed.await.is_err() || queue_tenancy(&world, &snapshot, &ctx, &queues).await.is_err() {
            return;
        }
    }
}

/// Queues the Teams and AccessGroups whose status would now differ.
async fn queue_tenancy(world: &World, snapshot: &Snapshot, ctx: &Context, queues: &Queues) -> Result<(), ()> {
    let now = reconcile::now();
    for team in world.teams.state() {
        let figures = ctx.usage.get(&crate::compiler::ObjectKey::of(&team.metadata));
        let desired = snapshot.team_status(&team, figures.as_ref(), &now);
        if team.status.as_ref() != Some(&desired) {
            queues
                .teams
                .send(KubeRef::from_obj(team.as_ref()))
                .await
                .map_err(|_| ())?;
        }
    }
    for group in world.groups.state() {
        let desired = snapshot.group_status(&group, &now);
        if group.status.as_ref() != Some(&desired) {
            queues
                .groups
                .send(KubeRef::from_obj(group.as_ref()))
                .await
                .map_err(|_| ())?;
        }
    }
    Ok(())
}

async fn on_gateways(
    world: Arc<World>,
    aliases: mpsc::Sender<KubeRef<ModelAlias>>,
    providers: mpsc::Sender<KubeRef<LLMProvider>>,
    pacing: Arc<Pacing>,
    usage: &super::usage::UsageBook,
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
            usage,
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
    usage: &super::usage::UsageBook,
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
        let desired = snapshot.alias_status(&alias, &env, references, usage);
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

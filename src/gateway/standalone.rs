//! Standalone mode: the routing table comes from manifest files, watched for edits.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::event::{EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::live::prepare;
use super::metrics::ReloadResult;
use super::Shared;
use crate::compiler::tenancy::AccessTable;
use crate::compiler::{Compiled, RoutingTable, SecretsAndEnv, Severity};
use crate::manifest::{load_paths, Manifests};
use crate::report;

/// Why the gateway cannot start from its files.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("the configuration has {} problem(s):\n{}", .0.len(), .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("{0}")]
    Prepare(#[from] super::live::PrepareError),
    #[error("cannot watch the configuration for changes: {0}")]
    Watch(#[from] notify::Error),
}

/// Reads and compiles the files. `previous` is the table being served, if any.
pub fn load(paths: &[PathBuf], previous: Option<&RoutingTable>) -> (Manifests, Compiled) {
    let manifests = load_paths(paths);
    let env = |var: &str| std::env::var(var).ok();
    let credentials = SecretsAndEnv {
        secrets: &manifests.secrets,
        env: Some(&env),
    };
    let compiled = manifests.compile(&credentials, previous);
    (manifests, compiled)
}

/// The first load: every problem is fatal, so a bad config never starts serving.
pub fn initial(paths: &[PathBuf]) -> Result<(RoutingTable, AccessTable), StartupError> {
    let (manifests, compiled) = load(paths, None);
    let lines = report::lines(&manifests, &compiled.diagnostics);
    let errors: Vec<String> = lines
        .iter()
        .filter(|l| l.severity == Severity::Error)
        .map(|l| l.text.clone())
        .collect();
    if !errors.is_empty() {
        return Err(StartupError::Invalid(errors));
    }
    for line in lines {
        tracing::warn!("{}", line.text);
    }
    Ok((compiled.table, compiled.access))
}

/// Applies the files again on top of `current`: broken aliases keep their last good routes;
/// a file that cannot be read at all rejects the whole reload.
pub fn reload(shared: &Shared, paths: &[PathBuf], current: &mut RoutingTable) {
    let (manifests, compiled) = load(paths, Some(current));
    let lines = report::lines(&manifests, &compiled.diagnostics);
    if manifests.has_fatal_problem() {
        for line in lines.iter().filter(|l| l.severity == Severity::Error) {
            tracing::error!("{}", line.text);
        }
        tracing::error!("configuration reload rejected: a file could not be read; still serving the previous routes");
        shared.metrics.reloaded(ReloadResult::rejected);
        return;
    }
    let live = match prepare(&compiled.table, &shared.clients) {
        Ok(live) => live,
        Err(e) => {
            tracing::error!("configuration reload rejected: {e}");
            shared.metrics.reloaded(ReloadResult::rejected);
            return;
        }
    };
    let errors = lines.iter().filter(|l| l.severity == Severity::Error).count();
    for line in &lines {
        match line.severity {
            Severity::Error => tracing::error!("{}", line.text),
            Severity::Warning => tracing::warn!("{}", line.text),
        }
    }
    shared.install(live, compiled.table.routes.len(), errors);
    shared.tenancy.install(compiled.access);
    *current = compiled.table;
    if errors == 0 {
        tracing::info!(routes = current.routes.len(), "configuration reloaded");
        shared.metrics.reloaded(ReloadResult::applied);
    } else {
        tracing::warn!(
            routes = current.routes.len(),
            errors,
            "configuration reloaded with errors; broken aliases keep their last good routes"
        );
        shared.metrics.reloaded(ReloadResult::applied_with_errors);
    }
}

/// Watches the paths and reloads on every (debounced) change, and on SIGHUP.
///
/// Debouncing happens in the reload task: after a change it waits until no further change
/// has come for [`QUIET`], so a burst (an editor's save, a `git checkout`) reloads once. While
/// nothing changes, nothing wakes up (a polling debouncer thread woke 27 times a second and
/// preempted requests on the gateway's core).
pub fn watch(
    shared: Arc<Shared>,
    paths: Vec<PathBuf>,
    mut current: RoutingTable,
) -> Result<notify::RecommendedWatcher, StartupError> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let notify_tx = tx.clone();
    let mut watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        // Only changes count: reading the files ourselves raises access events.
        let changed = result.is_ok_and(|event| {
            matches!(
                event.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
            )
        });
        if changed {
            // A full channel already holds a pending reload, which will see this change too.
            let _ = notify_tx.try_send(());
        }
    })?;
    for path in &paths {
        // Watch directories, not files: editors save by replacing the file.
        let (target, mode) = if path.is_dir() {
            (path.clone(), RecursiveMode::Recursive)
        } else {
            (
                path.parent()
                    .map(|p| {
                        if p.as_os_str().is_empty() {
                            PathBuf::from(".")
                        } else {
                            p.to_path_buf()
                        }
                    })
                    .unwrap_or_else(|| PathBuf::from(".")),
                RecursiveMode::NonRecursive,
            )
        };
        watcher.watch(&target, mode)?;
    }
    #[cfg(unix)]
    tokio::spawn(async move {
        if let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            while hangup.recv().await.is_some() {
                let _ = tx.try_send(());
            }
        }
    });
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            while let Ok(Some(())) = tokio::time::timeout(QUIET, rx.recv()).await {}
            let shared = shared.clone();
            let paths = paths.clone();
            let table = std::mem::take(&mut current);
            let joined = tokio::task::spawn_blocking(move || {
                let mut table = table;
                reload(&shared, &paths, &mut table);
                table
            })
            .await;
            match joined {
                Ok(table) => current = table,
                Err(e) => tracing::error!("configuration reload failed: {e}"),
            }
        }
    });
    Ok(watcher)
}

/// How long the files must stay unchanged before a reload.
const QUIET: Duration = Duration::from_millis(150);

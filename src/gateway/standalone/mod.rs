//! Standalone mode: the routing table comes from manifest files, watched for edits.
//!
//! Each reload reads every file, lets removals settle (objects gone from the files keep
//! serving from their last good definitions for `--settle-delay`; see
//! [`crate::manifest::Settle`]), compiles on top of the table being served (broken aliases
//! keep their last good routes) and swaps the result in.

mod watch;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::live::prepare;
use super::metrics::ReloadResult;
use super::Shared;
use crate::compiler::tenancy::AccessTable;
use crate::compiler::{Compiled, ObjectRef, RoutingTable, SecretView, SecretsAndEnv, Severity};
use crate::manifest::{load_paths, Gone, Group, Manifests, Settle, SettleOptions, SettleReport};
use crate::report;

pub use watch::{watch, Watching};

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

/// Compiles manifests read from files on top of `previous`, the table being served.
fn compile_files(manifests: &Manifests, previous: Option<&RoutingTable>) -> Compiled {
    let env = |var: &str| std::env::var(var).ok();
    let credentials = SecretsAndEnv {
        secrets: &manifests.secrets,
        env: Some(&env),
        view: SecretView::All,
    };
    manifests.compile(&credentials, previous)
}

/// The files and what the gateway learnt from them, carried from reload to reload.
pub struct Files {
    paths: Vec<PathBuf>,
    settle: Settle,
    current: RoutingTable,
}

impl Files {
    /// The first load: every problem is fatal, so a bad config never starts serving. Returns
    /// the files and the access table (teams, keys) they define.
    pub fn initial(paths: &[PathBuf], options: SettleOptions) -> Result<(Files, AccessTable), StartupError> {
        let mut manifests = load_paths(paths);
        let mut compiled = compile_files(&manifests, None);
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
        let mut settle = Settle::new(options);
        settle.apply(&mut manifests, Instant::now());
        stamp_created(&mut compiled.table, &manifests, None);
        let files = Files {
            paths: paths.to_vec(),
            settle,
            current: compiled.table,
        };
        Ok((files, compiled.access))
    }

    /// The table being served.
    pub fn table(&self) -> &RoutingTable {
        &self.current
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Applies the files again: broken aliases keep their last good routes, removed objects
    /// settle, and a file that cannot be read at all rejects the whole reload. Returns when
    /// to reload again for a held object to be removed.
    pub fn reload(&mut self, shared: &Shared) -> Option<Instant> {
        let mut manifests = load_paths(&self.paths);
        if manifests.has_fatal_problem() {
            for line in report::lines(&manifests, &[]) {
                tracing::error!("{}", line.text);
            }
            tracing::error!(
                "configuration reload rejected: a file could not be read; still serving the previous routes"
            );
            shared.metrics.reloaded(ReloadResult::rejected);
            return None;
        }
        let settled = self.settle.apply(&mut manifests, Instant::now());
        log_settled(&settled, self.settle.options());
        let mut compiled = compile_files(&manifests, Some(&self.current));
        stamp_created(&mut compiled.table, &manifests, Some(&self.current));
        let lines = report::lines(&manifests, &compiled.diagnostics);
        let live = match prepare(&compiled.table, &shared.clients, &shared.targets) {
            Ok(live) => live,
            Err(e) => {
                tracing::error!("configuration reload rejected: {e}");
                shared.metrics.reloaded(ReloadResult::rejected);
                return settled.next_check;
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
        shared
            .metrics
            .held_objects
            .set(i64::try_from(settled.held).unwrap_or(i64::MAX));
        self.current = compiled.table;
        let routes = self.current.routes.len();
        if errors == 0 {
            tracing::info!(routes, held = settled.held, "configuration reloaded");
            shared.metrics.reloaded(ReloadResult::applied);
        } else {
            tracing::warn!(
                routes,
                errors,
                held = settled.held,
                "configuration reloaded with errors; broken aliases keep their last good routes"
            );
            shared.metrics.reloaded(ReloadResult::applied_with_errors);
        }
        settled.next_check
    }
}

/// One log line per file whose objects were held or removed. A deleted or emptied file is a
/// warning (it is how a file being rewritten looks); documents removed from a file that
/// still defines others are ordinary edits.
fn log_settled(report: &SettleReport, options: SettleOptions) {
    let delay = humantime::format_duration(options.delay);
    let objects = |group: &Group| group.objects.join(", ");
    for group in &report.newly_held {
        let what = group.gone.describe(&group.file);
        if group.gone == Gone::RemovedFromFile {
            tracing::info!(file = %group.file.display(), objects = %objects(group), "{what}: they keep serving for {delay} (--settle-delay), then are removed");
        } else {
            tracing::warn!(file = %group.file.display(), objects = %objects(group), "{what}: its objects keep serving their last good routes for {delay} (--settle-delay) in case it is being rewritten; they are removed if it stays so, or at once with --allow-empty");
        }
    }
    for group in &report.removed {
        let what = group.gone.describe(&group.file);
        let when = if options.allow_empty && group.gone != Gone::RemovedFromFile {
            "at once (--allow-empty)".to_string()
        } else {
            format!("after {delay} (--settle-delay)")
        };
        if group.gone == Gone::RemovedFromFile {
            tracing::info!(file = %group.file.display(), objects = %objects(group), "{what}: removed them {when}");
        } else {
            tracing::warn!(file = %group.file.display(), objects = %objects(group), "{what}: removed its objects {when}");
        }
    }
}

/// Gives every route without a creation time (aliases from files have none) a stable one, for
/// `created` in `/v1/models`: the time it already had in the table being served, else the
/// modification time of the file that defines it, when the gateway first saw it. Stable
/// across reloads and restarts while the file is not edited, the same on every replica
/// reading the same files, and for an alias added later, about when it was added.
fn stamp_created(table: &mut RoutingTable, manifests: &Manifests, previous: Option<&RoutingTable>) {
    for route in table.routes.values_mut() {
        if route.created.is_some() {
            continue;
        }
        route.created = previous
            .and_then(|p| p.routes.get(&route.alias))
            .and_then(|r| r.created)
            .or_else(|| {
                let origin = manifests.origins.get(&ObjectRef::alias(route.source.clone()))?;
                modified(&origin.file)
            })
            .or_else(|| unix_seconds(SystemTime::now()));
    }
}

fn modified(file: &Path) -> Option<i64> {
    unix_seconds(std::fs::metadata(file).ok()?.modified().ok()?)
}

fn unix_seconds(time: SystemTime) -> Option<i64> {
    let seconds = time.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(seconds).ok()
}

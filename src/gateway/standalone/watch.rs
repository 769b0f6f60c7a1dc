//! Watching the files: reload on every (debounced) change, on SIGHUP, and when a held
//! object is due for removal.
//!
//! Debouncing happens in the reload task: after a change it waits until no further change
//! has come for [`QUIET`], so a burst (an editor's save, a `git checkout`) reloads once. While
//! nothing changes, nothing wakes up (a polling debouncer thread woke 27 times a second and
//! preempted requests on the gateway's core).
//!
//! Directories are watched, not files (editors save by replacing the file), and so is the
//! parent of each given path, so that a directory deleted and created again (or a given path
//! that does not exist yet) is noticed; the watches are renewed after every reload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Files, StartupError};
use crate::gateway::Shared;

/// How long the files must stay unchanged before a reload.
const QUIET: Duration = Duration::from_millis(150);

/// The watch and its reload task; dropping it stops both.
pub struct Watching {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts watching `files`' paths and reloading `shared` from them.
pub fn watch(shared: Arc<Shared>, files: Files) -> Result<Watching, StartupError> {
    let given: Vec<PathBuf> = files.paths().iter().map(|p| absolute(p)).collect();
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let notify_tx = tx.clone();
    let relevant_to = given.clone();
    let watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| {
        // Only changes count: reading the files ourselves raises access events. And only
        // changes to the given paths: their parents are watched too.
        let changed = result.is_ok_and(|event| {
            matches!(
                event.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Name(_) | ModifyKind::Any)
            ) && event.paths.iter().any(|p| relevant(p, &relevant_to))
        });
        if changed {
            // A full channel already holds a pending reload, which will see this change too.
            let _ = notify_tx.try_send(());
        }
    })?;
    let watcher = Arc::new(Mutex::new(watcher));
    watch_paths(&watcher, &given, true)?;

    let mut tasks = Vec::new();
    #[cfg(unix)]
    tasks.push(tokio::spawn(async move {
        if let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            while hangup.recv().await.is_some() {
                let _ = tx.try_send(());
            }
        }
    }));
    let files = Arc::new(Mutex::new(files));
    tasks.push(tokio::spawn(async move {
        // The first load freed what it read, too.
        let _ = tokio::task::spawn_blocking(crate::memory::trim).await;
        let mut due: Option<tokio::time::Instant> = None;
        loop {
            let wake = due.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365));
            tokio::select! {
                received = rx.recv() => {
                    if received.is_none() {
                        return;
                    }
                    while let Ok(Some(())) = tokio::time::timeout(QUIET, rx.recv()).await {}
                }
                () = tokio::time::sleep_until(wake), if due.is_some() => {}
            }
            let (shared, files, watcher, given) = (shared.clone(), files.clone(), watcher.clone(), given.clone());
            let joined = tokio::task::spawn_blocking(move || {
                let mut files = files.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let next = files.reload(&shared);
                // Renewed each time: a directory deleted and created again lost its watch.
                let _ = watch_paths(&watcher, &given, false);
                // A reload frees the previous table and everything read to build it: hand
                // that memory back (10,000 aliases: 79 MB after one reload without, as in the
                // in-cluster gateway).
                crate::memory::trim();
                next
            })
            .await;
            due = match joined {
                Ok(next) => next.map(tokio::time::Instant::from_std),
                Err(e) => {
                    tracing::error!("configuration reload failed: {e}");
                    None
                }
            };
        }
    }));
    Ok(Watching { tasks })
}

/// Watches each given directory recursively, and the parent of each given path (or its
/// nearest existing ancestor). The first time, a watch that editing needs (a given
/// directory, a given file's directory) failing is an error; the parent of a given directory
/// is a bonus (it may not be readable), and renewals are best effort (a path may be gone for
/// a while).
fn watch_paths(watcher: &Mutex<RecommendedWatcher>, given: &[PathBuf], first: bool) -> Result<(), notify::Error> {
    let mut watcher = watcher.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for path in given {
        let is_dir = path.is_dir();
        if is_dir {
            match watcher.watch(path, RecursiveMode::Recursive) {
                Err(e) if first => return Err(e),
                Err(e) => tracing::debug!(path = %path.display(), "cannot watch: {e}"),
                Ok(()) => {}
            }
        }
        let mut parent = path.parent();
        while let Some(dir) = parent {
            if dir.is_dir() {
                match watcher.watch(dir, RecursiveMode::NonRecursive) {
                    Err(e) if first && !is_dir => return Err(e),
                    Err(e) => tracing::debug!(path = %dir.display(), "cannot watch: {e}"),
                    Ok(()) => {}
                }
                break;
            }
            parent = dir.parent();
        }
    }
    Ok(())
}

/// Whether an event at `path` may change what the given paths hold: it is inside one of them;
/// or beside one that is not a directory (a ConfigMap volume updates a mounted file by
/// swapping the hidden `..data` link next to it); or it is one of their ancestors (a
/// directory on the way to a given path being created).
fn relevant(path: &Path, given: &[PathBuf]) -> bool {
    given
        .iter()
        .any(|g| path.starts_with(g) || g.starts_with(path) || (path.parent() == g.parent() && !g.is_dir()))
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_count_only_inside_beside_or_above_the_given_paths() {
        // Neither exists here: both count as files, whose neighbours matter.
        let given = [PathBuf::from("/etc/mg/aliases.yaml"), PathBuf::from("/srv/conf")];
        assert!(relevant(Path::new("/etc/mg/aliases.yaml"), &given));
        assert!(
            relevant(Path::new("/etc/mg/..data"), &given),
            "a ConfigMap volume's swap"
        );
        assert!(relevant(Path::new("/srv/conf/team/a.yaml"), &given));
        assert!(
            relevant(Path::new("/srv/conf"), &given),
            "the directory itself, deleted or created"
        );
        assert!(relevant(Path::new("/srv"), &given), "an ancestor, created again");
        assert!(!relevant(Path::new("/etc/other/aliases.yaml"), &given));
        assert!(!relevant(Path::new("/home/user/notes.yaml"), &given));

        let dir = tempfile::tempdir().expect("temp dir");
        let given = [dir.path().to_path_buf()];
        assert!(relevant(&dir.path().join("a.yaml"), &given));
        let beside = dir.path().with_extension("other");
        assert!(!relevant(&beside, &given), "a directory's neighbours do not matter");
    }
}

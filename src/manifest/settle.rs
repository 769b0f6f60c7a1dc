//! Removals settle: an object that disappears from the files keeps being served, from its
//! last good definition, until it has been gone for a settle delay.
//!
//! Files pass through states nobody meant to apply: `>` truncates a file before writing it
//! (empty, then partly written: a subset of its documents), `git checkout` and some editors
//! delete a file and write it again, a directory is replaced as a whole. Each looks like
//! objects being removed. Additions and changes apply at once; a removal applies only once
//! the object has stayed gone for the delay (measured from the first reload that missed it),
//! so a file being rewritten never drops its routes.
//!
//! With `allow_empty`, a file that is deleted or holds no object (and a directory that is
//! gone) removes its objects at the next reload instead: the operator trusts every state of
//! the files. Objects removed from a file that still defines others settle either way.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Manifests, Origin};
use crate::compiler::{ObjectKey, ObjectRef};
use crate::crd::{LLMProvider, ModelAlias};

/// How removals settle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettleOptions {
    /// How long an object must stay gone from the files before it is removed.
    pub delay: Duration,
    /// Objects of a deleted or emptied file (or a gone directory) go at once.
    pub allow_empty: bool,
}

/// The default settle delay: longer than a `git checkout` or a generator writing a file,
/// short enough that a deliberate removal is visible soon.
pub const DEFAULT_SETTLE_DELAY: Duration = Duration::from_secs(5);

impl Default for SettleOptions {
    fn default() -> Self {
        SettleOptions {
            delay: DEFAULT_SETTLE_DELAY,
            allow_empty: false,
        }
    }
}

/// An object, as files identify it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Id {
    Provider(ObjectKey),
    Alias(ObjectKey),
    Secret(ObjectKey),
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Provider(key) => write!(f, "LLMProvider {key}"),
            Id::Alias(key) => write!(f, "ModelAlias {key}"),
            Id::Secret(key) => write!(f, "Secret {key}"),
        }
    }
}

#[derive(Clone, Debug)]
enum Object {
    Provider(LLMProvider),
    Alias(ModelAlias),
    Secret(BTreeMap<String, Vec<u8>>),
}

#[derive(Debug)]
struct Known {
    /// The last good definition (an object that later fails to parse keeps this one).
    object: Object,
    origin: Origin,
    /// When a reload first missed it.
    missing_since: Option<Instant>,
}

/// Why an object is no longer in the files.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gone {
    /// Its file was deleted.
    FileDeleted,
    /// Its file's directory was deleted.
    DirectoryDeleted(PathBuf),
    /// Its file holds no object any more.
    FileEmpty,
    /// Its file still defines other objects.
    RemovedFromFile,
}

impl Gone {
    /// Whether `allow_empty` lets this removal apply at once.
    fn is_empty_or_deleted(&self) -> bool {
        !matches!(self, Gone::RemovedFromFile)
    }

    /// `file` and what happened to it, for a log line.
    pub fn describe(&self, file: &Path) -> String {
        match self {
            Gone::FileDeleted => format!("{} was deleted", file.display()),
            Gone::DirectoryDeleted(dir) => format!(
                "{} was deleted (its directory {} is gone)",
                file.display(),
                dir.display()
            ),
            Gone::FileEmpty => format!("{} holds no object any more (empty)", file.display()),
            Gone::RemovedFromFile => format!("{} no longer defines them", file.display()),
        }
    }
}

/// Objects of one file that one reload held or removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub file: PathBuf,
    pub gone: Gone,
    /// `Kind namespace/name` of each object, sorted.
    pub objects: Vec<String>,
}

/// What settling did in one reload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettleReport {
    /// Objects a reload missed for the first time, kept serving.
    pub newly_held: Vec<Group>,
    /// How many objects are being kept serving, in all.
    pub held: usize,
    /// Objects removed in this reload (they stayed gone for the delay, or `allow_empty`).
    pub removed: Vec<Group>,
    /// When the earliest held object is due for removal: reload then.
    pub next_check: Option<Instant>,
}

/// The objects last read from the files, carried from reload to reload.
#[derive(Debug, Default)]
pub struct Settle {
    options: SettleOptions,
    known: HashMap<Id, Known>,
}

impl Settle {
    pub fn new(options: SettleOptions) -> Self {
        Settle {
            options,
            known: HashMap::new(),
        }
    }

    pub fn options(&self) -> SettleOptions {
        self.options
    }

    /// Records what `manifests` holds, and adds to it every object the files lost less than
    /// the settle delay ago (after the objects read, so a name a current object claims stays
    /// with it).
    pub fn apply(&mut self, manifests: &mut Manifests, now: Instant) -> SettleReport {
        let present = self.record(manifests);
        let mut report = SettleReport::default();
        let mut newly_held: BTreeMap<(PathBuf, Gone), Vec<String>> = BTreeMap::new();
        let mut removed: BTreeMap<(PathBuf, Gone), Vec<String>> = BTreeMap::new();
        let mut missing: Vec<&Id> = self.known.keys().filter(|id| !present.contains_key(*id)).collect();
        missing.sort();
        let missing: Vec<Id> = missing.into_iter().cloned().collect();
        for id in missing {
            let Some(known) = self.known.get_mut(&id) else { continue };
            let gone = why_gone(&known.origin.file, manifests, &present);
            let since = *known.missing_since.get_or_insert(now);
            let due = since + self.options.delay;
            let group = (known.origin.file.clone(), gone.clone());
            if (self.options.allow_empty && gone.is_empty_or_deleted()) || now >= due {
                removed.entry(group).or_default().push(id.to_string());
                self.known.remove(&id);
                continue;
            }
            if since == now {
                newly_held.entry(group).or_default().push(id.to_string());
            }
            report.held += 1;
            report.next_check = Some(report.next_check.map_or(due, |next: Instant| next.min(due)));
            restore(manifests, &id, known);
        }
        let groups = |map: BTreeMap<(PathBuf, Gone), Vec<String>>| {
            map.into_iter()
                .map(|((file, gone), objects)| Group { file, gone, objects })
                .collect()
        };
        report.newly_held = groups(newly_held);
        report.removed = groups(removed);
        report
    }

    /// Updates the last good definitions from `manifests`; returns the ids it holds (objects
    /// that failed to parse included: they exist) and the file each came from.
    fn record(&mut self, manifests: &Manifests) -> HashMap<Id, PathBuf> {
        let mut present = HashMap::new();
        for (object, origin) in &manifests.origins {
            let id = match object.kind {
                crate::compiler::ObjectKind::LLMProvider => Id::Provider(object.key.clone()),
                crate::compiler::ObjectKind::ModelAlias => Id::Alias(object.key.clone()),
            };
            if let Some(known) = self.known.get_mut(&id) {
                known.missing_since = None;
                known.origin = origin.clone();
            }
            present.insert(id, origin.file.clone());
        }
        for provider in &manifests.providers {
            self.remember(
                Id::Provider(ObjectKey::of(&provider.metadata)),
                Object::Provider(provider.clone()),
                manifests,
            );
        }
        for alias in &manifests.aliases {
            self.remember(
                Id::Alias(ObjectKey::of(&alias.metadata)),
                Object::Alias(alias.clone()),
                manifests,
            );
        }
        for ((namespace, name), data) in &manifests.secrets {
            let key = ObjectKey::new(namespace.clone(), name.clone());
            let origin = manifests.secret_origins.get(&(namespace.clone(), name.clone()));
            present.insert(
                Id::Secret(key.clone()),
                origin.map(|o| o.file.clone()).unwrap_or_default(),
            );
            if let Some(origin) = origin {
                self.known.insert(
                    Id::Secret(key),
                    Known {
                        object: Object::Secret(data.clone()),
                        origin: origin.clone(),
                        missing_since: None,
                    },
                );
            }
        }
        present
    }

    fn remember(&mut self, id: Id, object: Object, manifests: &Manifests) {
        let reference = match &id {
            Id::Provider(key) => ObjectRef::provider(key.clone()),
            Id::Alias(key) => ObjectRef::alias(key.clone()),
            Id::Secret(_) => return,
        };
        if let Some(origin) = manifests.origins.get(&reference) {
            self.known.insert(
                id,
                Known {
                    object,
                    origin: origin.clone(),
                    missing_since: None,
                },
            );
        }
    }
}

/// Why the objects of `file` are missing from `manifests`.
fn why_gone(file: &Path, manifests: &Manifests, present: &HashMap<Id, PathBuf>) -> Gone {
    if !manifests.files.iter().any(|f| f == file) {
        return match file.parent().filter(|dir| !dir.as_os_str().is_empty() && !dir.exists()) {
            Some(dir) => {
                // The highest directory that is gone.
                let mut gone = dir;
                while let Some(up) = gone.parent().filter(|up| !up.as_os_str().is_empty() && !up.exists()) {
                    gone = up;
                }
                Gone::DirectoryDeleted(gone.to_path_buf())
            }
            None => Gone::FileDeleted,
        };
    }
    if present.values().any(|f| f == file) {
        Gone::RemovedFromFile
    } else {
        Gone::FileEmpty
    }
}

/// Puts a held object back into `manifests`, as read from its file.
fn restore(manifests: &mut Manifests, id: &Id, known: &Known) {
    match (&known.object, id) {
        (Object::Provider(provider), Id::Provider(key)) => {
            manifests.providers.push(provider.clone());
            manifests
                .origins
                .insert(ObjectRef::provider(key.clone()), known.origin.clone());
        }
        (Object::Alias(alias), Id::Alias(key)) => {
            manifests.aliases.push(alias.clone());
            manifests
                .origins
                .insert(ObjectRef::alias(key.clone()), known.origin.clone());
        }
        (Object::Secret(data), Id::Secret(key)) => {
            let name = (key.namespace.clone(), key.name.clone());
            manifests.secrets.insert(name.clone(), data.clone());
            manifests.secret_origins.insert(name, known.origin.clone());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;

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
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{parse_documents, FileText, Manifests};
use crate::compiler::{ObjectKey, ObjectKind, ObjectRef};

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
    Group(ObjectKey),
    Team(ObjectKey),
    /// A credential Secret, or a client API key Secret.
    Secret(ObjectKey),
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Provider(key) => write!(f, "LLMProvider {key}"),
            Id::Alias(key) => write!(f, "ModelAlias {key}"),
            Id::Group(key) => write!(f, "AccessGroup {key}"),
            Id::Team(key) => write!(f, "Team {key}"),
            Id::Secret(key) => write!(f, "Secret {key}"),
        }
    }
}

impl Id {
    fn of(object: &ObjectRef) -> Id {
        match object.kind {
            ObjectKind::LLMProvider => Id::Provider(object.key.clone()),
            ObjectKind::ModelAlias => Id::Alias(object.key.clone()),
            ObjectKind::AccessGroup => Id::Group(object.key.clone()),
            ObjectKind::Team => Id::Team(object.key.clone()),
            ObjectKind::Secret => Id::Secret(object.key.clone()),
        }
    }
}

/// An object the files defined. Its last good definition is kept as the text of its file
/// (shared by every object of that version of the file; a parsed copy of 10,000 aliases cost
/// 15 MB, their text 1.4 MB), parsed again only to hold it.
#[derive(Debug)]
struct Known {
    /// The file as it was when the object last parsed (an object that later fails to parse
    /// keeps this version).
    file: Arc<FileText>,
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
        let mut parsed: HashMap<*const FileText, Manifests> = HashMap::new();
        for id in missing {
            let Some(known) = self.known.get_mut(&id) else { continue };
            let gone = why_gone(&known.file.path, manifests, &present);
            let since = *known.missing_since.get_or_insert(now);
            let due = since + self.options.delay;
            let group = (known.file.path.clone(), gone.clone());
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
            let file = parsed.entry(Arc::as_ptr(&known.file)).or_insert_with(|| {
                let mut old = Manifests::default();
                parse_documents(&known.file.text, &known.file.path, &mut old);
                old
            });
            restore(manifests, &id, file);
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
        let mut parsed: Vec<(Id, &Path)> = Vec::new();
        for (object, origin) in &manifests.origins {
            let id = Id::of(object);
            if let Some(known) = self.known.get_mut(&id) {
                known.missing_since = None;
            }
            present.insert(id, origin.file.clone());
        }
        for provider in &manifests.providers {
            let object = ObjectRef::provider(ObjectKey::of(&provider.metadata));
            if let Some(origin) = manifests.origins.get(&object) {
                parsed.push((Id::of(&object), &origin.file));
            }
        }
        for alias in &manifests.aliases {
            let object = ObjectRef::alias(ObjectKey::of(&alias.metadata));
            if let Some(origin) = manifests.origins.get(&object) {
                parsed.push((Id::of(&object), &origin.file));
            }
        }
        for group in &manifests.groups {
            let object = ObjectRef::new(ObjectKind::AccessGroup, ObjectKey::of(&group.metadata));
            if let Some(origin) = manifests.origins.get(&object) {
                parsed.push((Id::of(&object), &origin.file));
            }
        }
        for team in &manifests.teams {
            let object = ObjectRef::new(ObjectKind::Team, ObjectKey::of(&team.metadata));
            if let Some(origin) = manifests.origins.get(&object) {
                parsed.push((Id::of(&object), &origin.file));
            }
        }
        for key in &manifests.api_keys {
            let object = ObjectRef::new(ObjectKind::Secret, key.key.clone());
            if let Some(origin) = manifests.origins.get(&object) {
                parsed.push((Id::of(&object), &origin.file));
            }
        }
        for (name, origin) in &manifests.secret_origins {
            let id = Id::Secret(ObjectKey::new(name.0.clone(), name.1.clone()));
            present.insert(id.clone(), origin.file.clone());
            parsed.push((id, &origin.file));
        }
        for (id, path) in parsed {
            if let Some(file) = manifests.texts.get(path) {
                self.known.insert(
                    id,
                    Known {
                        file: file.clone(),
                        missing_since: None,
                    },
                );
            }
        }
        present
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

/// Puts a held object back into `manifests`, from `old`, its file as last read with it.
fn restore(manifests: &mut Manifests, id: &Id, old: &Manifests) {
    match id {
        Id::Provider(key) => {
            let object = ObjectRef::provider(key.clone());
            let found = old.providers.iter().find(|p| &ObjectKey::of(&p.metadata) == key);
            if let (Some(provider), Some(origin)) = (found, old.origins.get(&object)) {
                manifests.providers.push(provider.clone());
                manifests.origins.insert(object, origin.clone());
            }
        }
        Id::Alias(key) => {
            let object = ObjectRef::alias(key.clone());
            let found = old.aliases.iter().find(|a| &ObjectKey::of(&a.metadata) == key);
            if let (Some(alias), Some(origin)) = (found, old.origins.get(&object)) {
                manifests.aliases.push(alias.clone());
                manifests.origins.insert(object, origin.clone());
            }
        }
        Id::Group(key) => {
            let object = ObjectRef::new(ObjectKind::AccessGroup, key.clone());
            let found = old.groups.iter().find(|g| &ObjectKey::of(&g.metadata) == key);
            if let (Some(group), Some(origin)) = (found, old.origins.get(&object)) {
                manifests.groups.push(group.clone());
                manifests.origins.insert(object, origin.clone());
            }
        }
        Id::Team(key) => {
            let object = ObjectRef::new(ObjectKind::Team, key.clone());
            let found = old.teams.iter().find(|t| &ObjectKey::of(&t.metadata) == key);
            if let (Some(team), Some(origin)) = (found, old.origins.get(&object)) {
                manifests.teams.push(team.clone());
                manifests.origins.insert(object, origin.clone());
            }
        }
        Id::Secret(key) => {
            let object = ObjectRef::new(ObjectKind::Secret, key.clone());
            let api_key = old.api_keys.iter().find(|k| &k.key == key);
            if let (Some(api_key), Some(origin)) = (api_key, old.origins.get(&object)) {
                manifests.api_keys.push(api_key.clone());
                manifests.origins.insert(object, origin.clone());
                return;
            }
            let name = (key.namespace.clone(), key.name.clone());
            if let (Some(data), Some(origin)) = (old.secrets.get(&name), old.secret_origins.get(&name)) {
                manifests.secrets.insert(name.clone(), data.clone());
                manifests.secret_origins.insert(name, origin.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests;

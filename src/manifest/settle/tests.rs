use std::path::Path;

use super::*;
use crate::manifest::load_paths;

const SECS: Duration = Duration::from_secs(1);

fn alias(name: &str) -> String {
    format!("---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {{name: {name}}}\nspec: {{target: p/m}}\n")
}

const PROVIDER: &str =
    "---\napiVersion: modelgate.dev/v1alpha1\nkind: LLMProvider\nmetadata: {name: p}\nspec: {type: mock}\n";
const SECRET: &str = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: k}\nstringData: {apiKey: sk-1}\n";

fn aliases(manifests: &Manifests) -> Vec<String> {
    let mut names: Vec<String> = manifests
        .aliases
        .iter()
        .filter_map(|a| a.metadata.name.clone())
        .collect();
    names.sort();
    names
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Files {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, text: &str) {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }
    fn load(&self) -> Manifests {
        load_paths(&[self.dir.path().to_path_buf()])
    }
}

fn settle(delay: Duration, allow_empty: bool) -> Settle {
    Settle::new(SettleOptions { delay, allow_empty })
}

#[test]
fn an_emptied_file_keeps_its_objects_until_the_delay_has_passed() {
    let files = Files::new();
    files.write("providers.yaml", &format!("{PROVIDER}{SECRET}"));
    files.write("aliases.yaml", &(alias("a") + &alias("b")));
    let mut settle = settle(5 * SECS, false);
    let t0 = Instant::now();
    let mut first = files.load();
    assert_eq!(settle.apply(&mut first, t0), SettleReport::default());

    // `>` truncates the file: empty.
    files.write("aliases.yaml", "");
    let mut manifests = files.load();
    let report = settle.apply(&mut manifests, t0 + SECS);
    assert_eq!(aliases(&manifests), ["a", "b"], "both kept");
    assert_eq!(
        report,
        SettleReport {
            newly_held: vec![Group {
                file: files.path("aliases.yaml"),
                gone: Gone::FileEmpty,
                objects: vec!["ModelAlias default/a".into(), "ModelAlias default/b".into()],
            }],
            held: 2,
            removed: vec![],
            next_check: Some(t0 + 6 * SECS),
        }
    );
    assert!(
        manifests
            .origins
            .contains_key(&ObjectRef::alias(ObjectKey::new("default", "a"))),
        "a held object names its file in reports"
    );

    // Then partly written: the first document only. `b` is still held, from the first miss.
    files.write("aliases.yaml", &alias("a"));
    let mut manifests = files.load();
    let report = settle.apply(&mut manifests, t0 + 2 * SECS);
    assert_eq!(aliases(&manifests), ["a", "b"]);
    assert_eq!((report.held, report.newly_held.len()), (1, 0), "{report:?}");
    assert_eq!(report.next_check, Some(t0 + 6 * SECS));

    // Written in full: nothing held.
    files.write("aliases.yaml", &(alias("a") + &alias("b")));
    let mut manifests = files.load();
    assert_eq!(settle.apply(&mut manifests, t0 + 3 * SECS), SettleReport::default());

    // Emptied for good: held, then removed once the delay has passed since the first miss.
    files.write("aliases.yaml", "# nothing here\n---\n");
    let mut manifests = files.load();
    assert_eq!(settle.apply(&mut manifests, t0 + 4 * SECS).held, 2);
    let mut manifests = files.load();
    assert_eq!(settle.apply(&mut manifests, t0 + 8 * SECS).held, 2, "not yet");
    let mut manifests = files.load();
    let report = settle.apply(&mut manifests, t0 + 9 * SECS);
    assert_eq!(aliases(&manifests), Vec::<String>::new());
    assert_eq!(
        (
            report.held,
            report.removed[0].gone.clone(),
            report.removed[0].objects.len()
        ),
        (0, Gone::FileEmpty, 2)
    );
    assert_eq!(report.next_check, None);
}

#[test]
fn a_deleted_file_keeps_providers_secrets_and_aliases_and_a_recreated_one_is_read_again() {
    let files = Files::new();
    files.write("all.yaml", &format!("{PROVIDER}{SECRET}{}", alias("a")));
    let mut settle = settle(5 * SECS, false);
    let t0 = Instant::now();
    settle.apply(&mut files.load(), t0);

    std::fs::remove_file(files.path("all.yaml")).expect("rm");
    let mut manifests = files.load();
    let report = settle.apply(&mut manifests, t0 + SECS);
    assert_eq!(
        (manifests.providers.len(), manifests.secrets.len(), aliases(&manifests)),
        (1, 1, vec!["a".to_string()])
    );
    assert_eq!(report.newly_held[0].gone, Gone::FileDeleted);
    assert_eq!(
        report.newly_held[0].objects,
        ["LLMProvider default/p", "ModelAlias default/a", "Secret default/k"]
    );

    files.write("all.yaml", &format!("{PROVIDER}{SECRET}{}", alias("changed")));
    let mut manifests = files.load();
    let report = settle.apply(&mut manifests, t0 + 2 * SECS);
    assert_eq!(
        aliases(&manifests),
        ["a", "changed"],
        "an addition applies at once; a removal settles"
    );
    assert_eq!(
        (report.held, report.newly_held.len()),
        (1, 0),
        "still held from the first miss: {report:?}"
    );
    assert_eq!(report.next_check, Some(t0 + 6 * SECS));
}

#[test]
fn a_deleted_directory_is_named() {
    let files = Files::new();
    files.write("team/aliases.yaml", &alias("a"));
    files.write("providers.yaml", PROVIDER);
    let mut settle = settle(5 * SECS, false);
    let t0 = Instant::now();
    settle.apply(&mut files.load(), t0);
    std::fs::remove_dir_all(files.path("team")).expect("rm -r");
    let mut manifests = files.load();
    let report = settle.apply(&mut manifests, t0);
    assert_eq!(aliases(&manifests), ["a"]);
    assert_eq!(report.newly_held[0].gone, Gone::DirectoryDeleted(files.path("team")));
    assert!(
        report.newly_held[0]
            .gone
            .describe(&files.path("team/aliases.yaml"))
            .contains("was deleted (its directory "),
        "{:?}",
        report.newly_held[0].gone
    );
}

#[test]
fn allow_empty_removes_a_deleted_or_emptied_file_at_once_but_not_a_partial_one() {
    let files = Files::new();
    files.write("providers.yaml", PROVIDER);
    files.write("aliases.yaml", &(alias("a") + &alias("b")));
    let mut settle = settle(5 * SECS, true);
    let t0 = Instant::now();
    settle.apply(&mut files.load(), t0);

    files.write("aliases.yaml", &alias("a"));
    let mut manifests = files.load();
    assert_eq!(
        settle.apply(&mut manifests, t0).held,
        1,
        "a document removed still settles"
    );
    assert_eq!(aliases(&manifests), ["a", "b"]);

    files.write("aliases.yaml", "");
    let mut manifests = files.load();
    let report = settle.apply(&mut manifests, t0);
    assert_eq!(aliases(&manifests), Vec::<String>::new());
    assert_eq!((report.held, report.removed.len()), (0, 1), "{report:?}");
    assert_eq!(report.removed[0].gone, Gone::FileEmpty);
}

#[test]
fn a_zero_delay_removes_at_once() {
    let files = Files::new();
    files.write("aliases.yaml", &(PROVIDER.to_string() + &alias("a")));
    let mut settle = settle(Duration::ZERO, false);
    let t0 = Instant::now();
    settle.apply(&mut files.load(), t0);
    files.write("aliases.yaml", PROVIDER);
    let mut manifests = files.load();
    let report = settle.apply(&mut manifests, t0);
    assert_eq!((aliases(&manifests).len(), report.removed.len()), (0, 1));
}

#[test]
fn an_object_that_no_longer_parses_is_not_held_it_is_still_there() {
    let files = Files::new();
    files.write("aliases.yaml", &(PROVIDER.to_string() + &alias("a")));
    let mut settle = settle(5 * SECS, false);
    let t0 = Instant::now();
    settle.apply(&mut files.load(), t0);
    files.write(
        "aliases.yaml",
        &(PROVIDER.to_string()
            + "---\napiVersion: modelgate.dev/v1alpha1\nkind: ModelAlias\nmetadata: {name: a}\nspec: {targt: p/m}\n"),
    );
    let mut manifests = files.load();
    let report = settle.apply(&mut manifests, t0 + SECS);
    assert_eq!(
        report,
        SettleReport::default(),
        "the compiler keeps its last good route"
    );
    assert_eq!(manifests.unreadable.len(), 1);
    assert!(Path::new(&files.path("aliases.yaml")).exists());
}

#[test]
fn teams_access_groups_and_client_keys_are_held_like_routes() {
    let files = Files::new();
    let tenancy = "---\napiVersion: modelgate.dev/v1alpha1\nkind: AccessGroup\nmetadata: {name: g}\nspec: {aliases: [a]}\n\
                   ---\napiVersion: modelgate.dev/v1alpha1\nkind: Team\nmetadata: {name: t}\nspec: {accessGroups: [g]}\n\
                   ---\napiVersion: v1\nkind: Secret\nmetadata: {name: key-1, labels: {modelgate.dev/team: t}}\n\
                   type: modelgate.dev/api-key\nstringData: {keyHash: \"sha256:00\"}\n";
    files.write("teams.yaml", tenancy);
    files.write("aliases.yaml", &format!("{PROVIDER}{}", alias("a")));
    let mut settle = settle(5 * SECS, false);
    let t0 = Instant::now();
    let mut first = files.load();
    assert_eq!((first.groups.len(), first.teams.len(), first.api_keys.len()), (1, 1, 1));
    settle.apply(&mut first, t0);

    // Truncated while being rewritten: the teams and their keys keep working.
    files.write("teams.yaml", "");
    let mut manifests = files.load();
    let report = settle.apply(&mut manifests, t0 + SECS);
    assert_eq!(
        (manifests.groups.len(), manifests.teams.len(), manifests.api_keys.len()),
        (1, 1, 1)
    );
    assert_eq!(
        report.newly_held[0].objects,
        ["AccessGroup default/g", "Team default/t", "Secret default/key-1"]
    );
    assert_eq!(manifests.api_keys[0].team.as_deref(), Some("t"));

    // Still gone after the delay: removed.
    let mut manifests = files.load();
    let report = settle.apply(&mut manifests, t0 + 7 * SECS);
    assert_eq!(
        (manifests.groups.len(), manifests.teams.len(), manifests.api_keys.len()),
        (0, 0, 0)
    );
    assert_eq!(report.removed[0].gone, Gone::FileEmpty);
}

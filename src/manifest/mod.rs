//! Reads LLMProvider, ModelAlias and Secret manifests from YAML files, the way `kubectl apply -f`
//! would, so the standalone gateway and `modelgate validate` see exactly what a cluster would.

mod parse;
mod settle;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compiler::tenancy::{ApiKeySecret, Membership};
use crate::compiler::{compile, Compiled, Credentials, Inputs, ObjectRef, RoutingTable, SecretData};
use crate::crd::{AccessGroup, LLMProvider, ModelAlias, Team};

pub use parse::parse_documents;
pub use settle::{Gone, Group, Settle, SettleOptions, SettleReport, DEFAULT_SETTLE_DELAY};

/// Where an object was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based index of the YAML document within the file.
    pub document: usize,
}

/// A problem found while reading files, before compiling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadProblem {
    pub origin: Origin,
    /// The object, when its kind, namespace and name could be read.
    pub object: Option<ObjectRef>,
    /// `Kind namespace/name` or `document N` when the object is unknown.
    pub subject: String,
    pub field: String,
    pub message: String,
    /// Whether the rest of the file could not be read (a YAML syntax error).
    pub fatal_for_file: bool,
}

impl fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}: {}",
            self.origin.file.display(),
            self.subject,
            self.field,
            self.message
        )
    }
}

/// Everything read from a set of paths.
#[derive(Debug, Default)]
pub struct Manifests {
    pub providers: Vec<LLMProvider>,
    pub aliases: Vec<ModelAlias>,
    pub groups: Vec<AccessGroup>,
    pub teams: Vec<Team>,
    /// Client API key Secrets (type `modelgate.dev/api-key` or labelled `modelgate.dev/api-key`).
    pub api_keys: Vec<ApiKeySecret>,
    pub secrets: SecretData,
    /// Objects that exist in the files but could not be read.
    pub unreadable: Vec<ObjectRef>,
    pub origins: HashMap<ObjectRef, Origin>,
    /// Where each Secret was read, by `(namespace, name)`.
    pub secret_origins: HashMap<(String, String), Origin>,
    pub problems: Vec<LoadProblem>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// The text of each file read, kept for [`Settle`] (a file's objects are held from it).
    pub texts: HashMap<PathBuf, Arc<FileText>>,
}

/// A file's text as read.
#[derive(Debug)]
pub struct FileText {
    pub path: PathBuf,
    pub text: String,
}

impl Manifests {
    /// Whether some file could not be read at all (so objects may be missing).
    pub fn has_fatal_problem(&self) -> bool {
        self.problems.iter().any(|p| p.fatal_for_file)
    }

    /// Compiles what was read, with the teams' access from their specs; objects that could not
    /// be read keep their routes from `previous`.
    pub fn compile(&self, credentials: &dyn Credentials, previous: Option<&RoutingTable>) -> Compiled {
        let mut compiled = compile(&Inputs {
            providers: &self.providers,
            aliases: &self.aliases,
            credentials,
            unreadable: &self.unreadable,
            previous,
        });
        compiled.add_access(
            &self.teams,
            &self.groups,
            &self.api_keys,
            &self.aliases,
            Membership::Spec,
        );
        compiled
    }
}

/// Reads every `.yaml`, `.yml` and `.json` file under the given files or directories
/// (recursively, skipping hidden entries), in path order.
///
/// A given path that does not exist is an error, but not one that makes the reading
/// incomplete ([`Manifests::has_fatal_problem`]): the standalone gateway lets the objects
/// it held settle (see [`Settle`]). A file deleted between listing and reading is skipped.
pub fn load_paths(paths: &[PathBuf]) -> Manifests {
    let mut manifests = Manifests::default();
    let mut files = Vec::new();
    for path in paths {
        collect_files(path, &mut files, &mut manifests.problems, true);
    }
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                parse_documents(&text, &file, &mut manifests);
                let text = Arc::new(FileText {
                    path: file.clone(),
                    text,
                });
                manifests.texts.insert(file.clone(), text);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => manifests.problems.push(LoadProblem {
                origin: Origin {
                    file: file.clone(),
                    document: 0,
                },
                object: None,
                subject: "file".to_string(),
                field: "-".to_string(),
                message: format!("cannot read the file: {e}"),
                fatal_for_file: true,
            }),
        }
        manifests.files.push(file);
    }
    manifests
}

/// `given`: whether `path` was given (not found inside a given directory, where one that has
/// just been deleted is skipped).
fn collect_files(path: &Path, files: &mut Vec<PathBuf>, problems: &mut Vec<LoadProblem>, given: bool) {
    let problem = |message: String, fatal_for_file: bool| LoadProblem {
        origin: Origin {
            file: path.to_path_buf(),
            document: 0,
        },
        object: None,
        subject: "path".to_string(),
        field: "-".to_string(),
        message,
        fatal_for_file,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            let missing = e.kind() == std::io::ErrorKind::NotFound;
            if missing && !given {
                return;
            }
            return problems.push(problem(format!("cannot read: {e}"), !missing));
        }
    };
    if metadata.is_file() {
        files.push(path.to_path_buf());
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if !given && e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => return problems.push(problem(format!("cannot list the directory: {e}"), true)),
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        let name = child.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if child.is_dir() {
            collect_files(&child, files, problems, false);
        } else if [".yaml", ".yml", ".json"].iter().any(|ext| name.ends_with(ext)) {
            files.push(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let mut manifests = Manifests::default();
        parse_documents(text, Path::new("m.yaml"), &mut manifests);
        manifests.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn each_reading_problem_names_file_object_and_field() {
        let text = r#"
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: a}
spec: {target: p/m, weight: 3}
---
apiVersion: modelgate.dev/v1
kind: ModelAlias
metadata: {name: b}
spec: {target: p/m}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: Bad_Name}
spec: {target: p/m}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: c}
spec: {target: p/m, active: "yes"}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: c}
spec: {target: p/m}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelRoute
metadata: {name: d}
---
kind: ConfigMap
apiVersion: v1
metadata: {name: ignored}
---
metadata: {name: nokind}
"#;
        assert_eq!(
            problems(text),
            vec![
                "m.yaml: ModelAlias default/a: spec.weight: unknown field 'spec.weight'; check its spelling against `modelgate crds` or `kubectl explain`",
                "m.yaml: ModelAlias default/b: apiVersion: apiVersion is 'modelgate.dev/v1'; it must be modelgate.dev/v1alpha1",
                "m.yaml: ModelAlias default/Bad_Name: metadata.name: 'Bad_Name' is not a valid Kubernetes name: use lowercase letters, digits, '-' and '.'; set spec.alias to serve a name with capitals or '_'",
                "m.yaml: ModelAlias default/c: spec.active: invalid type: string \"yes\", expected a boolean",
                "m.yaml: ModelAlias default/c: metadata.name: ModelAlias default/c is defined twice: first in m.yaml (document 4); keep one definition",
                "m.yaml: ModelRoute default/d: kind: unknown kind 'ModelRoute' in modelgate.dev; the kinds are LLMProvider, ModelAlias, AccessGroup and Team",
                "m.yaml: document 8: kind: has no kind; every document needs apiVersion and kind (LLMProvider, ModelAlias, AccessGroup, Team or Secret)",
            ]
        );
    }

    #[test]
    fn a_key_with_no_name_is_named_as_such() {
        let text = r#"apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: p}
spec: {type: mock, models: [m]}
?
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: a}
spec: {target: p/m, "": 1}
"#;
        assert_eq!(
            problems(text),
            vec![
                "m.yaml: LLMProvider default/p: <empty key>: a key with no name at '<empty key>' (an empty or null key, such as a `?` line with nothing after it); remove it",
                "m.yaml: ModelAlias default/a: spec.<empty key>: a key with no name at 'spec.<empty key>' (an empty or null key, such as a `?` line with nothing after it); remove it",
            ]
        );
    }

    #[test]
    fn a_yaml_syntax_error_is_fatal_for_its_file() {
        let mut manifests = Manifests::default();
        parse_documents("kind: [unclosed\n", Path::new("bad.yaml"), &mut manifests);
        assert!(manifests.has_fatal_problem());
        assert!(
            manifests.problems[0]
                .to_string()
                .starts_with("bad.yaml: document 1: -: not valid YAML: "),
            "{}",
            manifests.problems[0]
        );
    }

    #[test]
    fn a_yaml_error_names_its_line_and_column_even_for_unreadable_bytes() {
        for (text, place) in [
            (
                "kind: ModelAlias\nmetadata: {name: a}\nspec: {target: \"p/\u{7}\"}\n",
                "at line 3 column 19",
            ),
            ("\u{7}kind: x\n", "at line 1 column 1"),
            ("kind: [unclosed\n", "at line 2 column 1"),
        ] {
            let mut manifests = Manifests::default();
            parse_documents(text, Path::new("bad.yaml"), &mut manifests);
            let problem = manifests.problems[0].to_string();
            assert!(problem.contains(place), "{text:?}: {problem}");
            assert!(!problem.contains("position"), "{problem}");
        }
    }

    #[test]
    fn secrets_merge_data_and_string_data() {
        let mut manifests = Manifests::default();
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: n}\ndata: {a: aGVsbG8=}\nstringData: {b: world}\n";
        parse_documents(text, Path::new("s.yaml"), &mut manifests);
        let data = &manifests.secrets[&("n".to_string(), "s".to_string())];
        assert_eq!(
            (data["a"].as_slice(), data["b"].as_slice()),
            (&b"hello"[..], &b"world"[..])
        );
    }
}

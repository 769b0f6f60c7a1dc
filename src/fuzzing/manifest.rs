//! Manifest reading (`manifest::parse_documents`) on any text, then the compiler and the
//! gateway's table preparation on whatever it read, as the standalone gateway does.

use std::path::Path;

use crate::compiler::{Compiled, SecretsAndEnv};
use crate::manifest::{parse_documents, Manifests};

const FILE: &str = "fuzz.yaml";

/// Properties, for any UTF-8 text as one manifest file:
/// - reading, compiling and reporting never panic;
/// - every problem and every diagnostic has a location: each report line starts with the
///   file name, a reading problem names its document (1-based), subject and field, and a
///   syntax error its line;
/// - every object read has its origin recorded;
/// - reading and compiling twice gives the same answer;
/// - the gateway can prepare every table the compiler accepts;
/// - no report line contains a Secret's value (a key-like `sk-…` value that appears in the
///   text only once, so the line cannot have quoted it from elsewhere).
pub fn manifest_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (manifests, compiled) = read_and_compile(text);
    for problem in &manifests.problems {
        assert_eq!(problem.origin.file, Path::new(FILE));
        // YAML may start a document without `---` (after a `...`, or where a new top-level
        // mapping follows an indented one), so the count of `---` is no bound; a syntax
        // error names its line and column.
        assert!(problem.origin.document >= 1, "{problem:?}");
        if problem.fatal_for_file {
            assert!(
                problem.message.contains(" line "),
                "a syntax error without its line: {problem:?}"
            );
        }
        assert!(
            !problem.subject.is_empty() && !problem.field.is_empty() && !problem.message.is_empty(),
            "{problem:?}"
        );
    }
    for object in manifests
        .providers
        .iter()
        .map(|p| crate::compiler::ObjectRef::provider(crate::compiler::ObjectKey::of(&p.metadata)))
        .chain(
            manifests
                .aliases
                .iter()
                .map(|a| crate::compiler::ObjectRef::alias(crate::compiler::ObjectKey::of(&a.metadata))),
        )
    {
        assert!(manifests.origins.contains_key(&object), "{object} has no origin");
    }
    let lines = crate::report::lines(&manifests, &compiled.diagnostics);
    for line in &lines {
        assert!(line.text.starts_with(&format!("{FILE}: ")), "no file: {}", line.text);
    }
    for value in manifests.secrets.values().flat_map(|data| data.values()) {
        let Ok(value) = std::str::from_utf8(value).map(str::trim) else {
            continue;
        };
        if !value.starts_with("sk-") || value.len() < 12 || text.matches(value).count() > 1 {
            continue;
        }
        for line in &lines {
            assert!(!line.text.contains(value), "a Secret's value in: {}", line.text);
        }
    }

    let (_, again) = read_and_compile(text);
    assert_eq!(compiled.diagnostics, again.diagnostics, "compiling twice disagrees");
    assert_eq!(compiled.table, again.table, "compiling twice disagrees");
    super::compiler::prepares(&compiled.table);
}

fn read_and_compile(text: &str) -> (Manifests, Compiled) {
    let mut manifests = Manifests::default();
    parse_documents(text, Path::new(FILE), &mut manifests);
    // Variables whose name has an even length are set.
    let env = |var: &str| var.len().is_multiple_of(2).then(|| format!("env-key-{var}"));
    let credentials = SecretsAndEnv {
        secrets: &manifests.secrets,
        env: Some(&env),
        view: crate::compiler::SecretView::All,
    };
    let compiled = manifests.compile(&credentials, None);
    (manifests, compiled)
}

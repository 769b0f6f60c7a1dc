//! `modelgate import` as a user runs it: its output goes straight into `modelgate validate`,
//! and a broken file fails naming the file and the place.

use std::path::{Path, PathBuf};
use std::process::Command;

fn modelgate(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .output()
        .expect("run modelgate");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn case(name: &str) -> String {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/import-cases")
        .join(name);
    path.display().to_string()
}

const GOOD: &[(&str, &str)] = &[
    ("arch", "arch-basic.yaml"),
    ("arch", "arch-naming.yaml"),
    ("arch", "arch-advanced.yaml"),
    ("arch", "arch-realistic.yaml"),
    ("litellm", "litellm-docs.yaml"),
    ("litellm", "litellm-realistic.yaml"),
    ("litellm", "litellm-literal-key.yaml"),
    ("alias-api", "alias-api-list.json"),
    ("alias-api", "alias-api-hybrid.json"),
    ("alias-api", "alias-api-providers.json"),
    ("alias-api", "alias-api-create.json"),
];

#[test]
fn validate_accepts_what_import_prints_in_both_key_modes() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (from, name) in GOOD {
        for keys in ["secret", "env"] {
            let (code, stdout, stderr) =
                modelgate(&["import", "--from", from, &case(name), "--keys", keys, "-n", "ml"]);
            assert_eq!(code, 0, "import {name} --keys {keys}: {stderr}");
            assert!(
                stderr.contains("LLMProvider(s) and ") && stderr.contains(name),
                "{stderr}"
            );
            assert!(!stdout.contains("sk-proj"), "a literal key was printed for {name}");
            let file = dir.path().join(format!("{name}.{keys}.yaml"));
            std::fs::write(&file, &stdout).expect("write");
            let (code, out, err) = modelgate(&["validate", file.to_str().expect("path")]);
            assert_eq!(
                code, 0,
                "validate rejected the import of {name} --keys {keys}:\n{out}{err}\n{stdout}"
            );
            assert!(err.starts_with("valid: "), "{err}");
        }
    }
}

#[test]
fn import_of_a_broken_file_fails_naming_file_and_place_and_prints_nothing() {
    for (from, name, place) in [
        (
            "arch",
            "broken-arch-cycle.yaml",
            "model_aliases[\"chat.v1\"]: error: alias cycle: chat.v1 -> chat.v2 -> chat.v3 -> chat.v1",
        ),
        (
            "litellm",
            "broken-litellm-unknown-provider.yaml",
            "model_list[1].litellm_params.model: error: unknown provider 'frobnicate'",
        ),
        ("litellm", "broken-litellm-bad-yaml.yaml", ": 5:"),
        ("alias-api", "broken-alias-api.json", ": 4:"),
    ] {
        let path = case(name);
        let (code, stdout, stderr) = modelgate(&["import", "--from", from, &path]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert_eq!(stdout, "", "{name} printed output although it failed");
        assert!(
            stderr.contains(&format!("{path}{}", if place.starts_with(':') { "" } else { ": " })),
            "{stderr}"
        );
        assert!(stderr.contains(place), "{name}: expected '{place}' in:\n{stderr}");
        assert!(stderr.contains("nothing was printed"), "{stderr}");
    }
}

#[test]
fn import_of_a_missing_file_says_so() {
    let (code, stdout, stderr) = modelgate(&["import", "--from", "litellm", "/nonexistent/config.yaml"]);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(
        stderr.starts_with("modelgate: cannot read /nonexistent/config.yaml: "),
        "{stderr}"
    );
}

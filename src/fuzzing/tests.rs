//! Every committed fuzz input, replayed through its target's checks on every `cargo test`:
//! the seed corpora (`fuzz/corpus/<target>/`) and the crashes fuzzing found
//! (`fuzz/regressions/<target>/`, each file the minimized input).

use std::path::{Path, PathBuf};

use super::TARGETS;

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file() && !path.file_name().is_some_and(|n| n.as_encoded_bytes().starts_with(b".")))
        .collect();
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let mut replayed = 0;
    for &(target, check) in TARGETS {
        for file in inputs(kind, target) {
            let data = std::fs::read(&file).expect("read a fuzz input");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{} breaks a property of {target}; reproduce with `cargo fuzz run {target} {}` in fuzz/",
                file.display(),
                file.display()
            );
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn every_seed_input_keeps_every_property() {
    let replayed = replay("corpus");
    assert!(replayed >= 4 * TARGETS.len(), "only {replayed} seed inputs");
}

#[test]
fn every_crash_that_fuzzing_found_stays_fixed() {
    replay("regressions");
}

#[test]
fn every_target_has_a_fuzz_target_file_and_a_seed_corpus() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for &(target, _) in TARGETS {
        let file = fuzz.join("fuzz_targets").join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            text.contains(&format!("modelgate::fuzzing::{target}(")),
            "{}",
            file.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "no [[bin]] {target}"
        );
        assert!(!inputs("corpus", target).is_empty(), "no seed corpus for {target}");
        assert!(
            fuzz.join("regressions").join(target).is_dir(),
            "no regressions dir for {target}"
        );
    }
}

#[test]
fn every_provider_type_the_gateway_translates_is_fuzzed() {
    use super::wire::{wires, NOT_YET, TYPES};
    use crate::crd::ProviderType;
    let wires = wires();
    for (i, provider_type) in TYPES.iter().enumerate() {
        if *provider_type == ProviderType::Mock || NOT_YET.contains(provider_type) {
            continue;
        }
        assert!(
            wires[i].is_some(),
            "{provider_type:?} gets no wire: fix its LLMProvider in src/fuzzing/wire.rs so that `prepare` accepts it"
        );
    }
    let surfaces = crate::gateway::metrics::Endpoint::ALL
        .iter()
        .filter(|e| crate::gateway::surfaces::inbound(**e).is_some())
        .count();
    assert!(surfaces >= 1, "no client API reads requests into the canonical form");
}

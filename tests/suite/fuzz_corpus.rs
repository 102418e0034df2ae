//! Replays every fuzz input kept in the repository through what its target checks, on
//! stable: fuzz/corpus/TARGET/* (the minimised corpus) and fuzz/regressions/TARGET/*
//! (every crash ever found, minimised). The checks are fuzz/src/lib.rs itself.

use std::panic;
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
mod checks;

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("read the folder").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every file of `dir`; returns the files that panicked, with why.
fn replay(check: fn(&[u8]), dir: &Path) -> (usize, Vec<String>) {
    let files = files(dir);
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("read a corpus file");
        if let Err(panic) = panic::catch_unwind(|| check(&data)) {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            failed.push(format!("{}: {why}", file.display()));
        }
    }
    (files.len(), failed)
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn every_corpus_and_regression_input_passes_its_check() {
    let mut failed = Vec::new();
    for (target, check) in checks::TARGETS {
        let (corpus, mut corpus_failed) = replay(*check, &fuzz_dir().join("corpus").join(target));
        // A target without its corpus would replay nothing and pass: the corpus is part
        // of the target.
        assert!(corpus > 0, "fuzz/corpus/{target} is empty or missing");
        let (_, mut regressions_failed) =
            replay(*check, &fuzz_dir().join("regressions").join(target));
        failed.append(&mut corpus_failed);
        failed.append(&mut regressions_failed);
    }
    assert!(
        failed.is_empty(),
        "inputs that fail:\n{}",
        failed.join("\n")
    );
}

#[test]
fn every_corpus_folder_has_a_target() {
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(folder)) else {
            continue;
        };
        for entry in entries {
            let name = entry.expect("read the folder").file_name();
            let name = name.to_string_lossy();
            assert!(
                checks::TARGETS.iter().any(|(target, _)| *target == name),
                "fuzz/{folder}/{name} has no entry in fuzz/src/lib.rs TARGETS, so it is never replayed"
            );
        }
    }
}

/// The in-memory host must be faithful enough that valid configurations load: otherwise
/// the config target would only ever explore error paths.
#[test]
fn the_shipped_configuration_loads_cleanly_through_the_fuzz_host() {
    for seed in ["shipped.toml", "xinetd-debian.toml", "xinetd-internal.toml"] {
        let data = std::fs::read(fuzz_dir().join("corpus/config").join(seed)).expect("seed");
        let host = checks::MemoryHost::new(&data);
        let config = oxinetd::config::load(Path::new(checks::MAIN), &host);
        let errors: Vec<String> = config.errors.iter().map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{seed}:\n{}", errors.join("\n"));
        assert!(!config.services.is_empty(), "{seed}: no service");
    }
}

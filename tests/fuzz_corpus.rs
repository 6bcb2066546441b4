//! Replay the fuzz corpus (`fuzz/corpus/<target>/`) and the crash regressions
//! (`fuzz/regressions/<target>/`) through the same code path and invariants as the cargo-fuzz
//! targets, so what the fuzzers found stays fixed without installing cargo-fuzz.

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod harness;

use harness::{check_batch_response, check_channel_file, ChannelTarget};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`, sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Run `check` on every input of `target`; fail naming each input that panicked or broke an
/// invariant. Returns how many inputs were replayed.
fn replay<T>(target: &str, mut check: impl FnMut(&Path) -> Result<T, String>) -> usize {
    let files = inputs(target);
    let mut failures = Vec::new();
    for path in &files {
        match catch_unwind(AssertUnwindSafe(|| check(path))) {
            Ok(Ok(_)) => {}
            Ok(Err(violation)) => failures.push(format!("{}: {violation}", path.display())),
            Err(_) => failures.push(format!("{}: panicked", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} inputs failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    files.len()
}

fn replay_channel(target: ChannelTarget) {
    let mut opened = 0;
    let replayed = replay(target.name(), |path| {
        let summary = check_channel_file(target, path)?;
        opened += usize::from(summary.opened);
        Ok(summary)
    });
    assert!(
        replayed >= 5,
        "fuzz/corpus/{} has only {replayed} files",
        target.name()
    );
    assert!(
        opened > 0,
        "no {} corpus file opened as a file of its format",
        target.name()
    );
}

#[test]
fn shopify_corpus_keeps_the_accounting_contract() {
    replay_channel(ChannelTarget::Shopify);
}

#[test]
fn amazon_corpus_keeps_the_accounting_contract() {
    replay_channel(ChannelTarget::Amazon);
}

#[test]
fn woocommerce_corpus_keeps_the_accounting_contract() {
    replay_channel(ChannelTarget::Woocommerce);
}

#[test]
fn mapped_csv_corpus_keeps_the_accounting_contract() {
    replay_channel(ChannelTarget::MappedCsv);
}

#[test]
fn detect_corpus_keeps_the_accounting_contract() {
    replay_channel(ChannelTarget::Detect);
}

#[test]
fn every_channel_target_has_a_corpus() {
    for target in ChannelTarget::ALL {
        assert!(
            !inputs(target.name()).is_empty(),
            "no corpus for {}",
            target.name()
        );
    }
}

#[test]
fn batch_response_corpus_maps_every_part_in_range() {
    let mut parsed = 0;
    let replayed = replay("batch_response", |path| {
        let data = std::fs::read(path).map_err(|e| e.to_string())?;
        let parts = check_batch_response(&data)?;
        parsed += usize::from(parts > 0);
        Ok(parts)
    });
    assert!(
        replayed >= 5,
        "fuzz/corpus/batch_response has only {replayed} files"
    );
    assert!(
        parsed > 0,
        "no batch_response corpus file parsed into parts"
    );
}

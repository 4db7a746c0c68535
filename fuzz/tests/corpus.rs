//! The fuzz targets as ordinary tests on stable Rust: every input of the checked-in corpus
//! (`corpus/<target>/`), then pseudo-random inputs (half of them mutations of the corpus, half
//! random bytes), through the same `check` functions libFuzzer calls. It needs neither nightly
//! features nor libFuzzer, so it runs wherever `cargo test` does, and a corpus input that once
//! found a bug stays a regression test.
//!
//! `CHITTY_FUZZ_CASES` sets the number of pseudo-random inputs per target (default 5000) and
//! `CHITTY_FUZZ_SEED` their seed (default fixed, so a run is repeatable). A failing input is
//! written to `target/fuzz-failures/<target>/` to be replayed or added to the corpus.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            (path, data)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    inputs
}

/// splitmix64: small, fast, and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that tend to matter to JSON, protobuf, UTF-8 and the hub's rules.
const INTERESTING: &[u8] =
    b"{}[]\":,\\0 \n\x1b\x00\x01\x02\x08\x0a\x12\x7f\x80\xc3\xa9\xe2\xff-9eu";

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let at = at.min(data.len() - 1);
                data[at] ^= 1 << rng.below(8);
            }
            1 => data.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 => data.insert(at, rng.next() as u8),
            3 if at < data.len() => {
                let end = (at + 1 + rng.below(8)).min(data.len());
                data.drain(at..end);
            }
            4 => {
                let from = rng.below(data.len());
                let len = rng.below(16).min(data.len() - from);
                let chunk = data[from..from + len].to_vec();
                data.splice(at..at, chunk);
            }
            _ => data.truncate(at),
        }
    }
    data
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} is not a number"))
        })
        .unwrap_or(default)
}

/// Runs `check` on one input; on a panic, saves the input and says where before failing.
fn run(target: &str, what: &str, data: &[u8], check: fn(&[u8])) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(data))) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/fuzz-failures")
            .join(target);
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(what.replace('/', "_"));
        let _ = std::fs::write(&path, data);
        eprintln!("{target}: {what} failed; input saved as {}", path.display());
        resume_unwind(panic);
    }
}

fn replay(target: &str, check: fn(&[u8])) {
    let inputs = corpus(target);
    for (path, data) in &inputs {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into());
        run(target, &format!("corpus-{name}"), data, check);
    }
    let seed = env_or("CHITTY_FUZZ_SEED", 0x00c4_1177);
    let mut rng = Rng(seed);
    for case in 0..env_or("CHITTY_FUZZ_CASES", 5000) {
        let data: Vec<u8> = if case % 2 == 0 {
            let (_, parent) = &inputs[rng.below(inputs.len())];
            mutate(&mut rng, parent)
        } else {
            (0..rng.below(2048)).map(|_| rng.next() as u8).collect()
        };
        run(target, &format!("seed-{seed}-case-{case}"), &data, check);
    }
}

#[test]
fn websocket_frame() {
    replay("websocket_frame", chitty_fuzz::websocket_frame::check);
}

#[test]
fn websocket_codec() {
    replay("websocket_codec", chitty_fuzz::websocket_codec::check);
}

#[test]
fn event_validation() {
    replay("event_validation", chitty_fuzz::event_validation::check);
}

#[test]
fn hub_sessions() {
    replay("hub_sessions", chitty_fuzz::hub_sessions::check);
}

#[test]
fn hub_replicas() {
    replay("hub_replicas", chitty_fuzz::hub_replicas::check);
}

//! Helpers shared by the CLI integration tests: run the real binary, make inputs.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tranzcast"))
}

pub fn tranzcast(args: &[&str]) -> Output {
    Command::new(bin()).args(args).env_remove("RUST_LOG").output().expect("run tranzcast")
}

/// The binary started with `args` in the background (no RUST_LOG), its
/// stdout piped and its stderr as given.
pub fn spawn(args: &[&str], stderr: Stdio) -> Child {
    Command::new(bin()).args(args).env_remove("RUST_LOG").stdout(Stdio::piped()).stderr(stderr).spawn().expect("start tranzcast")
}

/// Sends `signal` ("-INT", "-TERM") to a child with kill(1).
pub fn signal(child: &Child, signal: &str) {
    let sent = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(sent.success(), "kill {signal} {}", child.id());
}

/// `tranzcast loadtest --json` of the `scenario` file, its report in `out`,
/// with `more` arguments (where the cluster comes from), logging errors only:
/// its JSON summary.
pub fn loadtest(scenario: &Path, out: &Path, more: &[&str]) -> serde_json::Value {
    let o = Command::new(bin())
        .args(["loadtest", "--json", "--scenario"])
        .arg(scenario)
        .arg("--out")
        .arg(out)
        .args(more)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "tranzcast loadtest failed: {}", String::from_utf8_lossy(&o.stderr));
    json(&String::from_utf8_lossy(&o.stdout))
}

pub fn ok(args: &[&str]) -> String {
    let o = tranzcast(args);
    assert!(o.status.success(), "tranzcast {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn fails(args: &[&str]) -> String {
    let o = tranzcast(args);
    assert!(!o.status.success(), "tranzcast {args:?} succeeded: {}", String::from_utf8_lossy(&o.stdout));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!err.contains("panicked"), "tranzcast {args:?} panicked: {err}");
    err
}

/// Pseudo-random bytes from a seed (blake3 XOF): reproducible, incompressible.
pub fn random_file(path: &Path, len: u64, seed: &str) {
    let mut xof = blake3::Hasher::new_derive_key("tranzcast test file").update(seed.as_bytes()).finalize_xof();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        std::io::Write::write_all(&mut f, &buf[..n]).unwrap();
        left -= n as u64;
    }
    std::io::Write::flush(&mut f).unwrap();
}

/// A test's scratch directory with one file in it, `name`, of `len`
/// pseudo-random bytes from `seed` (see [`random_file`]): the directory
/// (removed when dropped) and the file.
pub fn dir_with_input(name: &str, len: u64, seed: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(name);
    random_file(&input, len, seed);
    (dir, input)
}

pub fn files_equal(a: &Path, b: &Path) -> bool {
    std::fs::read(a).unwrap() == std::fs::read(b).unwrap()
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Every regular file under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The `cluster.json` a `tranzcast demo --serve` writes in `data` (waited
/// for, at most two minutes, then read once whole).
pub fn cluster_json(data: &Path) -> serde_json::Value {
    let described = data.join("cluster.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !described.exists() {
        assert!(std::time::Instant::now() < deadline, "no cluster.json");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    serde_json::from_slice(&std::fs::read(&described).unwrap()).unwrap()
}

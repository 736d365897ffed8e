//! The floor server of `bench/edge.sh`: the edge's serving stack (our
//! listeners: hyper, rustls, quinn + our HTTP/3, with the edge's default limits)
//! with nothing behind it. Every file of a directory is held in memory and
//! served by name with one range at most; no access check, store, demand or
//! headers beyond the length: what the stack allows.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use tranzcast_net::server::{HttpServer, ServerOptions, full, handler};

use crate::LoadtestError;

/// Every regular file of `dir`, by name.
pub fn load_dir(dir: &Path) -> Result<HashMap<String, Bytes>, LoadtestError> {
    let io = |e: std::io::Error| LoadtestError::Io { what: format!("cannot read {}", dir.display()), source: e };
    let mut files = HashMap::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        if e.file_type().map_err(io)?.is_file() {
            files.insert(e.file_name().to_string_lossy().into_owned(), Bytes::from(std::fs::read(e.path()).map_err(io)?));
        }
    }
    Ok(files)
}

/// Serves `files` on `listen` (TLS over TCP and QUIC, one port).
pub async fn start(
    listen: std::net::SocketAddr,
    files: HashMap<String, Bytes>,
    identity: tranzcast_net::TlsIdentity,
) -> Result<HttpServer, LoadtestError> {
    let files = Arc::new(files);
    let serve = handler(move |req: http::Request<Bytes>, _cx| {
        let files = files.clone();
        async move {
            let name = req.uri().path().rsplit('/').next().unwrap_or_default();
            let Some(blob) = files.get(name) else {
                let mut r = Response::new(full("no such file"));
                *r.status_mut() = StatusCode::NOT_FOUND;
                return r;
            };
            let range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|v| single_range(v, blob.len()));
            let mut r = match &range {
                Some(x) => {
                    let mut r = Response::new(full(blob.slice(x.clone())));
                    *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                    if let Ok(v) = http::HeaderValue::from_str(&format!("bytes {}-{}/{}", x.start, x.end - 1, blob.len())) {
                        r.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    r
                }
                None => Response::new(full(blob.clone())),
            };
            let len = range.map_or(blob.len(), |x| x.len());
            r.headers_mut().insert(header::CONTENT_LENGTH, http::HeaderValue::from(len));
            r
        }
    });
    // The edge's default limits: the floor pays for the same checks.
    let opts = ServerOptions {
        https: listen,
        plain: None,
        identity,
        limits: tranzcast_config::LimitsConfig::default(),
        drain: std::time::Duration::from_secs(1),
        stats: Default::default(),
        // As the edge runs by default: one per core.
        h3_endpoints: 0,
    };
    HttpServer::bind(opts, serve).await.map_err(|e| LoadtestError::Network(e.to_string()))
}

/// The one satisfiable range a `Range` header asks of `len` bytes, by the
/// edge's own (fuzzed) parser; several ranges, none, or a malformed header: None
/// (the floor then answers with the whole file).
fn single_range(v: &str, len: usize) -> Option<std::ops::Range<usize>> {
    use tranzcast_proto::range::{parse_range, resolve};
    let specs = parse_range(v).ok()??;
    match resolve(&specs, len as u64).as_slice() {
        [r] => Some(usize::try_from(r.start).ok()?..usize::try_from(r.end).ok()?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::single_range;

    #[test]
    fn floor_server_answers_one_range_clamped_and_ignores_the_rest() {
        assert_eq!(single_range("bytes=4096-8191", 1 << 20), Some(4096..8192));
        assert_eq!(single_range("bytes=10-99", 50), Some(10..50));
        assert_eq!(single_range("bytes=-5", 50), Some(45..50));
        assert_eq!(single_range("bytes=5-", 50), Some(5..50));
        for other in ["bytes=9-1", "bytes=50-60", "items=1-2", "bytes=a-b", "bytes=1-2,4-5", ""] {
            assert_eq!(single_range(other, 50), None, "{other}");
        }
    }
}

//! The local range gateway (`tranzcast play --serve`): the title's plaintext
//! as one HTTP resource with full RFC 9110 range semantics on 127.0.0.1, so a
//! standard player (ffplay, VLC, mpv, a browser) plays and seeks. A range is
//! mapped to segments, fetched through the session (verified, decrypted,
//! kept in memory), and only the asked-for bytes are sent.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use tranzcast_net::ranged::{ByteStream, Source};
use tranzcast_net::{Body, HttpServer, LocalCa, ServerOptions, full};

use crate::{ClientError, Session};

struct Plaintext(Arc<Session>);

impl Source for Plaintext {
    fn stream(&self, start: u64, end: u64) -> ByteStream {
        let session = self.0.clone();
        let seg = u64::from(session.manifest().segment_size);
        let first = start / seg;
        let last = end.saturating_sub(1) / seg;
        futures_util::stream::iter(first..=last)
            .then(move |i| {
                let session = session.clone();
                async move {
                    let b = session.segment_plain(i).await.map_err(|e| std::io::Error::other(e.to_string()))?;
                    let base = i * seg;
                    let from = start.saturating_sub(base).min(b.len() as u64) as usize;
                    let to = (end - base).min(b.len() as u64) as usize;
                    Ok::<Bytes, std::io::Error>(b.slice(from..to))
                }
            })
            .boxed()
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    server: HttpServer,
    /// Where players connect: `http://ADDR/<title>`.
    pub addr: std::net::SocketAddr,
}

impl Gateway {
    /// Serves `session`'s title at `http://addr/<title>` (plain HTTP, loopback).
    pub async fn start(session: Arc<Session>, addr: std::net::SocketAddr, scratch: &std::path::Path) -> Result<Self, ClientError> {
        // The server type always has a TLS listener too; give it a throwaway identity.
        let identity =
            LocalCa::load_or_create(scratch).and_then(|ca| ca.issue(&["localhost"])).map_err(|e| ClientError::Network(e.to_string()))?;
        let opts = ServerOptions {
            https: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            plain: Some(addr),
            identity,
            // A local player's requests: the defaults of any server.
            limits: tranzcast_net::LimitsConfig::default(),
            drain: std::time::Duration::from_secs(2),
            stats: Default::default(),
            // One local player: one endpoint is plenty.
            h3_endpoints: 1,
        };
        let title = session.manifest().title.as_str().to_string();
        // The first segment's address names this ingest of the title.
        let etag = format!("\"{}\"", session.manifest().segments.first().map(|a| a.to_hex()).unwrap_or_default());
        let handler = tranzcast_net::handler(move |req: Request<Bytes>, _cx| {
            let (session, title, etag) = (session.clone(), title.clone(), etag.clone());
            async move { answer(&session, &title, &etag, &req) }
        });
        let server = HttpServer::bind(opts, handler).await.map_err(|e| ClientError::Network(e.to_string()))?;
        let addr = server.plain_addr.ok_or_else(|| ClientError::Network("no plain listener".into()))?;
        Ok(Self { server, addr })
    }

    /// Stops serving.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn answer(session: &Arc<Session>, title: &str, etag: &str, req: &Request<Bytes>) -> Response<Body> {
    if let Err(refusal) = tranzcast_proto::gateway::route(req.method().as_str(), req.uri().path(), title) {
        let text = match refusal {
            tranzcast_proto::gateway::Refusal::Method => "only GET and HEAD\n".to_string(),
            tranzcast_proto::gateway::Refusal::NotFound => format!("this gateway plays /{title}\n"),
        };
        let mut r = Response::new(full(text));
        *r.status_mut() = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::NOT_FOUND);
        return r;
    }
    let m = session.manifest();
    // A local player asks one range at a time; a few more are fine.
    let rep = tranzcast_net::ranged::Representation { etag, content_type: &m.media_type, max_ranges: 16 };
    tranzcast_net::ranged::respond_from(req.method(), req.headers(), &Plaintext(session.clone()), m.plaintext_len, &rep)
}

//! Opening a session: the origin's key, the ticket validated (one play
//! counted, retried with the same Idempotency-Key), the title key joined
//! from its halves, the signed manifest checked, the sources listed.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use tranzcast_net::client::{CallLimits, call};
use tranzcast_proto::answers::{ErrorBody, PlayGrant};
use tranzcast_proto::keys::TitleKey;
use tranzcast_proto::manifest::SignedManifest;
use tranzcast_proto::pulse::EdgeRole;
use tranzcast_proto::ticket::{SignedToken, Token};

use super::driver::Core;
use super::{OpenOptions, PLAIN_CACHE_BYTES, Session, Source};
use crate::ClientError;
use crate::schedule::Scheduler;
use crate::scoring::SourceView;

impl Session {
    /// Validates the ticket at the origin (counting one play), joins the
    /// title key from K2 (ticket) and K1 (certificate), and checks the
    /// manifest against the origin's signature.
    pub async fn open(opts: OpenOptions) -> Result<Self, ClientError> {
        let http = tranzcast_net::client::https(opts.ca_pem.as_bytes()).map_err(|e| ClientError::Network(e.to_string()))?;
        Self::open_with(opts, http).await
    }

    /// [`Session::open`] over a given HTTP client (its connections are shared
    /// with whoever else uses it, as a load test's simulated viewers do).
    /// The client must trust the cluster's CA; `opts.ca_pem` is not used.
    pub async fn open_with(opts: OpenOptions, http: reqwest::Client) -> Result<Self, ClientError> {
        // A cluster may run several origins on one shared state: the first
        // that answers serves the handshake, the others take over on failure.
        let origins: Vec<&str> = opts.origin.split(',').map(|o| o.trim().trim_end_matches('/')).filter(|o| !o.is_empty()).collect();
        if origins.is_empty() {
            return Err(ClientError::Invalid("no origin URL".into()));
        }
        // The origin is authenticated by TLS; its signing key comes from it.
        let small = CallLimits { answer: Duration::from_secs(10), total: Duration::from_secs(30), max_body: 4 << 10 };
        let mut key_answer = Err(ClientError::Network("no origin answered".into()));
        for (i, origin) in origins.iter().enumerate() {
            key_answer = match call(http.get(format!("{origin}/v1/origin-key")), small).await {
                Ok((status, body)) if status.is_success() => Ok((i, body)),
                Ok((status, _)) => Err(ClientError::Network(format!("{origin}: {status}"))),
                Err(e) => Err(ClientError::Network(format!("{origin}: {e}"))),
            };
            if key_answer.is_ok() {
                break;
            }
        }
        let (mut at, body) = key_answer?;
        let kb = tranzcast_proto::answers::OriginKey::parse(&body).ok_or_else(|| ClientError::Invalid("origin key".into()))?;
        let origin_key = ed25519_key(&kb)?;
        let ticket = SignedToken::from_text(opts.ticket.trim()).map_err(|e| ClientError::Invalid(format!("ticket: {e}")))?;
        let k2 = match ticket.verify(&origin_key) {
            Ok(Token::Ticket(t)) => t.key_part,
            _ => return Err(ClientError::Invalid("the ticket is not signed by this origin".into())),
        };
        // One key for this attempt to play: if the answer is lost on the way
        // back (the play already counted), a retry with the key gets the
        // same grant instead of "replaced" or "spent".
        let attempt = hex::encode(tranzcast_proto::random_bytes::<16>());
        let mut tries = 0u64;
        // The answer carries the title's manifest: the largest the format allows, base64.
        let play_limits = CallLimits {
            answer: Duration::from_secs(30),
            total: Duration::from_secs(120),
            max_body: (tranzcast_proto::manifest::MAX_SEGMENTS as usize * 32 + (1 << 20)) / 3 * 4 + (1 << 20),
        };
        // A failed call, or an origin failing (5xx), is tried again at the
        // next origin, with the same key: if the first one counted the play
        // before it failed, the shared state gives the same grant again.
        let (status, body) = loop {
            let origin = origins[at % origins.len()];
            let req = http
                .post(format!("{origin}/v1/play"))
                .header("idempotency-key", &attempt)
                .json(&tranzcast_proto::api::PlayBody::client(opts.ticket.trim()));
            let failed = match call(req, play_limits).await {
                Ok((status, body)) if !status.is_server_error() => break (status, body),
                Ok((status, body)) => ClientError::Network(format!("{origin}: {status}: {}", ErrorBody::read(&body).1)),
                Err(e) => ClientError::Network(format!("{origin}: {e}")),
            };
            if tries >= 2 * origins.len() as u64 {
                return Err(failed);
            }
            tries += 1;
            at += 1;
            tokio::time::sleep(std::time::Duration::from_millis(250 * tries.min(4))).await;
        };
        if !status.is_success() {
            let (code, reason) = ErrorBody::read(&body);
            return Err(ClientError::Refused { code, reason });
        }
        let grant = PlayGrant::parse(&body).map_err(|e| ClientError::Invalid(format!("the origin's answer: {e}")))?;
        let certificate = grant.certificate;
        let cert = match SignedToken::from_text(&certificate).map_err(|e| ClientError::Invalid(e.to_string()))?.verify(&origin_key) {
            Ok(Token::Certificate(c)) => c.clone(),
            _ => return Err(ClientError::Invalid("the certificate is not signed by this origin".into())),
        };
        let key = TitleKey::from_bytes(TitleKey::from_bytes(k2).xor(&cert.key_part));
        let mb = URL_SAFE_NO_PAD
            .decode(grant.manifest.as_deref().ok_or_else(|| ClientError::Invalid("no manifest".into()))?)
            .map_err(|e| ClientError::Invalid(format!("manifest: {e}")))?;
        let sm = SignedManifest::decode(&mb).map_err(|e| ClientError::Invalid(format!("manifest: {e}")))?;
        let manifest = sm.verify(&origin_key).map_err(|e| ClientError::Invalid(format!("manifest: {e}")))?.clone();
        if manifest.title != cert.title {
            return Err(ClientError::Invalid(format!("manifest for {}, certificate for {}", manifest.title, cert.title)));
        }
        let sources: Vec<Source> = grant.sources.into_iter().map(|s| Source { name: s.name, role: s.role, https: s.https }).collect();
        let views = sources.iter().map(|s| SourceView::new(&s.name, s.role != EdgeRole::Peer)).collect();
        // A segment's size on the wire, as rankings estimate it before its outboard is known.
        let expect_len = u64::from(manifest.segment_size) + tranzcast_proto::frame::OVERHEAD as u64;
        let parallel = opts.parallel.max(1);
        let sched = Scheduler::new(manifest.segments.clone(), expect_len, parallel, views);
        let plain_lens = (0..manifest.segments.len() as u64).map(|i| manifest.segment_plain_len(i)).collect();
        let urls = sources.iter().map(|s| s.https.clone()).collect();
        let (core, driver) =
            Core::start(sched, http, &certificate, manifest.title.as_str().to_string(), manifest.segments.clone(), urls, plain_lens);
        let mut session = Self {
            plain: moka::future::Cache::builder()
                .weigher(|_, b: &Bytes| u32::try_from(b.len()).unwrap_or(u32::MAX))
                .max_capacity(PLAIN_CACHE_BYTES)
                .build(),
            key,
            manifest,
            certificate,
            signed_manifest: Bytes::from(mb),
            replacement: grant.ticket,
            sources,
            parallel,
            local: None,
            core,
            _driver: driver,
        };
        if let Some(local) = opts.local {
            session.attach_local(local)?;
        }
        Ok(session)
    }
}

fn ed25519_key(b: &[u8; 32]) -> Result<ed25519_dalek::VerifyingKey, ClientError> {
    ed25519_dalek::VerifyingKey::from_bytes(b).map_err(|_| ClientError::Invalid("origin key is not an Ed25519 key".into()))
}

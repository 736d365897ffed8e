//! Cluster membership: who may join, as what, and under which name.
//!
//! A node or an edge joins with its own credential
//! ([`tranzcast_proto::member`]), minted with the origin's `member_key` and
//! bound to one name and one role: the record it writes is the one its
//! credential names, as the role its credential names. The shared cluster
//! token grants no identity. A peer joins with a live, unrevoked validation
//! certificate; its record and push token are bound to that certificate's
//! serial, so another viewer cannot take them while it is live, and a peer
//! whose certificate expired or was revoked must join again with a new one.

use super::{ApiError, ApiResult, Inner, json_response};
use crate::state::Member;
use crate::{now_ms, now_secs, random16};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use tranzcast_proto::api::JoinRole;
use tranzcast_proto::member::{MemberCredential, valid_name};
use tranzcast_proto::ticket::{Certificate, SignedToken, Token};

/// The member credential in `Authorization: Bearer`, checked against the
/// member key (pure: the head-only gate runs it before any body byte).
pub(super) fn credential(inner: &Inner, headers: &http::HeaderMap) -> Result<MemberCredential, ApiError> {
    let text = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let text = text.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "nodes and edges join with Authorization: Bearer <member credential> (tranzcast cluster add-member)",
        )
    })?;
    let forbidden = |reason: &str| ApiError::new(StatusCode::FORBIDDEN, "forbidden", reason);
    let c = MemberCredential::parse(text.trim())
        .map_err(|_| forbidden("not a member credential (the cluster token no longer joins: enrol with tranzcast cluster add-member)"))?;
    c.verify(inner.config.member_key.as_bytes()).map_err(|_| forbidden("the member credential was not issued by this origin"))?;
    Ok(c)
}

/// The peer's certificate in `Authorization: Tranzcast`, verified and live.
fn peer_certificate(inner: &Inner, req: &Request<Bytes>) -> Result<Certificate, ApiError> {
    let cert = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Tranzcast "));
    let cert = cert.ok_or_else(|| {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a peer joins with Authorization: Tranzcast <certificate>")
    })?;
    match SignedToken::from_text(cert.trim()).ok().as_ref().map(|s| s.verify_own(&inner.tokens).cloned()) {
        Some(Ok(Token::Certificate(c))) if !c.is_expired(now_secs()) => Ok(c),
        _ => Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "the certificate is invalid or expired")),
    }
}

/// `POST /v1/cluster/join` and `/heartbeat`.
pub(super) fn join(inner: &Inner, req: &Request<Bytes>) -> ApiResult {
    let j = tranzcast_proto::api::join(req.body()).map_err(ApiError::wire)?;
    let peer = match j.role {
        JoinRole::Peer => {
            let cert = peer_certificate(inner, req)?;
            if inner.state.is_revoked(&cert.serial).map_err(ApiError::internal)? {
                return Err(ApiError::new(StatusCode::FORBIDDEN, "revoked", "the certificate was revoked"));
            }
            Some(cert)
        }
        JoinRole::Member(role) => {
            let c = credential(inner, req.headers())?;
            if c.name != j.name || c.role != role {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "credential_mismatch",
                    format!("this credential was issued to {} as {}", c.name, c.role.as_str()),
                ));
            }
            // Minted by a machine whose clock runs ahead, it would outlive a
            // retirement: a credential from the future is refused.
            if c.issued_ms > now_ms() + ISSUE_SKEW_MS {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "the member credential was issued in the future; check the clock",
                ));
            }
            None
        }
    };
    // The check of the name's holder (and of a retirement) and the write are
    // one step: two joins of one name cannot both pass the check, and a
    // heartbeat cannot write a record back after its member was retired.
    let _held = inner.members_lock.lock().map_err(|_| ApiError::internal("members lock poisoned"))?;
    // On a shared state other origins write too: the write is conditional
    // on the record read (optimistic), and a lost race reads and decides again.
    let mut attempts = 0;
    let push_token = loop {
        if let JoinRole::Member(_) = j.role
            && inner.state.retired_at(&j.name).map_err(ApiError::internal)?.is_some_and(|at| credential_issued(inner, req) <= at)
        {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "retired", format!("member {} was retired; enrol it again", j.name)));
        }
        let stored = inner.state.member_as_stored(&j.name).map_err(ApiError::internal)?;
        let known = stored.as_ref().map(|(m, _)| m.clone());
        // A member new, back after going quiet, at a new address, in
        // another role or (a peer) under another certificate: the next play
        // names it as it is now (heartbeats only refresh loads, which the
        // plays' list may show a second late).
        let news = known.as_ref().is_none_or(|k| {
            k.last_seen_ms < inner.member_cutoff_ms()
                || k.https != j.https
                || k.h3 != j.h3.to_string()
                || k.role != j.role.as_str()
                || peer.as_ref().is_some_and(|c| k.serial.as_deref() != Some(hex::encode(c.serial).as_str()))
        });
        let (push_token, serial, expires) = match &peer {
            None => (None, None, None),
            Some(cert) => {
                let serial = hex::encode(cert.serial);
                let token = match known {
                    // The operator's servers hold their names by credential.
                    Some(m) if m.role != "peer" => {
                        return Err(ApiError::new(StatusCode::CONFLICT, "name_taken", format!("{} is a cluster member's name", j.name)));
                    }
                    // The record's own peer proves it with the push token it was
                    // given: the certificate alone does not (clients send theirs
                    // to every source, peers included).
                    Some(m) if m.serial.as_deref() == Some(serial.as_str()) => {
                        let given = m.push_token.as_deref().unwrap_or("");
                        let shown = j.push_token.as_deref().unwrap_or("");
                        if given.is_empty() || !super::constant_time_eq(given.as_bytes(), shown.as_bytes()) {
                            return Err(ApiError::new(
                                StatusCode::FORBIDDEN,
                                "push_token_required",
                                format!("{} is joined; its heartbeats carry the push token it was given", j.name),
                            ));
                        }
                        m.push_token
                    }
                    Some(m) if inner.peer_live(&m) => {
                        return Err(ApiError::new(StatusCode::CONFLICT, "name_taken", format!("{} is held by another peer", j.name)));
                    }
                    _ => None,
                };
                (Some(token.unwrap_or_else(|| hex::encode(random16()))), Some(serial), Some(cert.expires))
            }
        };
        let m = Member {
            name: j.name.clone(),
            role: j.role.as_str().to_string(),
            https: j.https.clone(),
            h3: j.h3.to_string(),
            last_seen_ms: now_ms(),
            load: j.load,
            push_token: push_token.clone(),
            playback_key: j.playback_key.clone(),
            health: j.health.clone(),
            serial,
            expires,
        };
        if inner.state.put_member_if(&m, stored.as_ref().map(|(_, raw)| raw.as_slice())).map_err(ApiError::internal)? {
            if news {
                inner.forget_sources();
            }
            break push_token;
        }
        attempts += 1;
        if attempts >= 4 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "busy",
                format!("{} is being joined elsewhere at this moment; try again", j.name),
            ));
        }
    };
    let answer = tranzcast_proto::answers::JoinAnswer {
        origin_key: hex::encode(inner.signing.verifying_key().as_bytes()),
        heartbeat_s: 5,
        push_token,
    };
    Ok(json_response(StatusCode::OK, &answer))
}

/// Loopback, unspecified, private, shared (CGNAT), link-local or unique-local:
/// an address that names more than one machine, or this one.
fn local(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00 || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// How far ahead of the origin's clock a member credential may be issued.
const ISSUE_SKEW_MS: u64 = 5 * 60 * 1000;

/// When the request's member credential was issued (checked already).
fn credential_issued(inner: &Inner, req: &Request<Bytes>) -> u64 {
    credential(inner, req.headers()).map_or(0, |c| c.issued_ms)
}

/// Longest a peer's TLS certificate lives (its validation certificate's
/// expiry, at most this).
const PEER_TLS_MAX_SECS: u64 = 7 * 86_400;

/// `POST /v1/cluster/peer-identity` (a peer, with its live, unrevoked
/// certificate): a TLS certificate and key for the peer's service, signed by
/// the origin's peer CA, for the address the request came from only (and
/// `localhost` when that is a loopback address), until its validation
/// certificate expires. A viewer never holds a CA key, and cannot get a
/// certificate for any name but its own address: not an edge's, not another
/// viewer's.
pub(super) fn peer_identity(inner: &Inner, req: &Request<Bytes>, cx: &tranzcast_net::RequestContext) -> ApiResult {
    let cert = peer_certificate(inner, req)?;
    if inner.state.is_revoked(&cert.serial).map_err(ApiError::internal)? {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "revoked", "the certificate was revoked"));
    }
    let ip = cx.peer.ip().to_canonical();
    if local(ip) && !inner.config.allow_local_peer_certificates {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "local_address",
            "peer certificates are issued to public addresses only (a local one may be a server's name here)",
        ));
    }
    let mut names = vec![ip.to_string()];
    if ip.is_loopback() {
        names.push("localhost".into());
    }
    let not_after = cert.expires.min(now_secs() + PEER_TLS_MAX_SECS);
    let (chain, key) = inner.peer_ca.issue_pem(&names, not_after).map_err(ApiError::internal)?;
    Ok(json_response(StatusCode::OK, &tranzcast_proto::answers::PeerIdentity { cert: chain, key, names, expires: not_after }))
}

/// `POST /v1/cluster/members/{name}/retire` (the operator, with the
/// storefront token): every credential of `name` issued until now is
/// refused and its record removed. Enrolling it again mints a newer one.
pub(super) fn retire(inner: &Inner, name: &str) -> ApiResult {
    if !valid_name(name) {
        return Err(ApiError::bad("name: 1..=64 of a-z, A-Z, 0-9, '-', '_'"));
    }
    let _held = inner.members_lock.lock().map_err(|_| ApiError::internal("members lock poisoned"))?;
    let at = now_ms();
    inner.state.retire_member(name, at).map_err(ApiError::internal)?;
    inner.forget_sources();
    tracing::warn!(member = name, "member retired");
    Ok(json_response(StatusCode::OK, &tranzcast_proto::answers::Retired { retired: name.to_string(), credentials_issued_until_ms: at }))
}

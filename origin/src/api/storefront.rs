//! The storefront's routes: customers, orders (idempotent), revocations.

use super::*;

pub(super) fn add_customer(inner: &Inner, req: &Request<Bytes>) -> ApiResult {
    let name = wire::new_customer(req.body()).map_err(ApiError::wire)?;
    let id = inner.state.add_customer(&name, now_secs()).map_err(ApiError::internal)?;
    Ok(json_response(StatusCode::CREATED, &tranzcast_proto::answers::CustomerCreated { customer: id }))
}

pub(super) fn title_key(inner: &Inner, title: &TitleId) -> Result<Option<TitleKey>, ApiError> {
    Ok(inner.catalog_entry(title).map_err(ApiError::internal)?.map(|e| TitleKey::from_bytes(e.key)))
}

/// The `Idempotency-Key` header of an order or a play, if any: 1..=64 of
/// A-Z, a-z, 0-9, '-', '_', '.', ':'.
pub(super) fn idempotency_key(req: &Request<Bytes>) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else { return Ok(None) };
    Ok(Some(wire::idempotency_key(v.as_bytes()).map_err(ApiError::wire)?.to_string()))
}

pub(super) fn add_order(inner: &Inner, req: &Request<Bytes>) -> ApiResult {
    let o = wire::new_order(req.body()).map_err(ApiError::wire)?;
    let title = o.title.clone();
    if inner.state.customer(o.customer).map_err(ApiError::internal)?.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_customer", format!("no customer {}", o.customer)));
    }
    if inner.state.customer_revoked(o.customer).map_err(ApiError::internal)? {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "customer_revoked", format!("customer {} was revoked", o.customer)));
    }
    let key =
        title_key(inner, &title)?.ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_title", format!("no title {title}")))?;
    let now = now_secs();
    let (kind, plays, expires) = match o.terms {
        wire::OrderTerms::Buy => (OrderKind::Buy, UNLIMITED, 0),
        wire::OrderTerms::Rent { plays, seconds } => {
            (OrderKind::Rent { plays, hours: u32::try_from(seconds.div_ceil(3600)).unwrap_or(u32::MAX) }, plays, now + seconds)
        }
    };
    let serial = random16();
    let (t, record) =
        validation::issue(o.customer, &title, plays, expires, now, inner.state.peek_order(), &key, serial, tranzcast_proto::random_bytes());
    let order = Order { customer: o.customer, title: title.to_string(), kind, created: now, ticket: hex::encode(serial) };
    let Some(idempotency_key) = idempotency_key(req)? else {
        let id = inner.state.add_order(&order, &serial, &record).map_err(ApiError::internal)?;
        let text = ticket::to_text(&t.sign(&inner.tokens));
        return Ok(json_response(StatusCode::CREATED, &OrderPlaced { ticket: text, order: id, serial: hex::encode(serial) }));
    };
    // The request's fingerprint: what it asked for, not what was computed from it (the time).
    let fingerprint = o.fingerprint;
    match inner
        .state
        .add_order_once(KeyedOrder { key: &idempotency_key, fingerprint, order: &order, serial: &serial, record: &record })
        .map_err(ApiError::internal)?
    {
        OrderOnce::Created(id) => {
            let text = ticket::to_text(&t.sign(&inner.tokens));
            Ok(json_response(StatusCode::CREATED, &OrderPlaced { ticket: text, order: id, serial: hex::encode(serial) }))
        }
        OrderOnce::Existing(id) => {
            // The first ticket as issued: its record holds every field and
            // K1, and Ed25519 signs deterministically, so the text is the same.
            let o = inner.state.order(id).map_err(ApiError::internal)?.ok_or_else(|| ApiError::internal("keyed order missing"))?;
            let mut first = [0u8; 16];
            hex::decode_to_slice(&o.ticket, &mut first).map_err(ApiError::internal)?;
            let r = inner
                .state
                .ticket(&first)
                .map_err(ApiError::internal)?
                .ok_or_else(|| ApiError::internal("keyed order's ticket missing"))?;
            let t = tranzcast_proto::ticket::PlayTicket {
                serial: first,
                customer: r.customer,
                created: r.created,
                expires: r.expires,
                title: title.clone(),
                plays: r.plays,
                key_part: key.xor(&r.k1),
            };
            let mut resp = json_response(
                StatusCode::CREATED,
                &OrderPlaced { ticket: ticket::to_text(&t.sign(&inner.tokens)), order: id, serial: o.ticket },
            );
            resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(resp)
        }
        OrderOnce::KeyReused(id) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            format!("Idempotency-Key {idempotency_key:?} was used for another order request (order {id})"),
        )),
    }
}

/// Revokes a ticket (its whole order: every ticket, replacements to come
/// included, and every certificate issued from them), a serial (a ticket's,
/// as above, or a certificate's alone), an order or a customer (every order).
pub(super) fn revoke(inner: &Inner, req: &Request<Bytes>) -> ApiResult {
    let r = wire::revoke(req.body()).map_err(ApiError::wire)?;
    let now = now_secs();
    let (what, done) = match r {
        wire::Revoke::Ticket(t) => {
            let st = SignedToken::from_text(&t).map_err(|e| ApiError::bad(format!("ticket: {e}")))?;
            let serial = match st.verify_own(&inner.tokens) {
                Ok(Token::Ticket(t)) => t.serial,
                _ => return Err(ApiError::refused(Refusal::Forged)),
            };
            (wire::RevokeBody { ticket: Some(hex::encode(serial)), ..Default::default() }, inner.state.revoke_serial(&serial, now))
        }
        wire::Revoke::Serial(serial) => {
            (wire::RevokeBody { serial: Some(hex::encode(serial)), ..Default::default() }, inner.state.revoke_serial(&serial, now))
        }
        wire::Revoke::Order(o) => (wire::RevokeBody { order: Some(o), ..Default::default() }, inner.state.revoke_order(o, now)),
        wire::Revoke::Customer(c) => (wire::RevokeBody { customer: Some(c), ..Default::default() }, inner.state.revoke_customer(c, now)),
    };
    let what_text = serde_json::to_string(&what).unwrap_or_default();
    let Some(done) = done.map_err(ApiError::internal)? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("nothing to revoke: no such {what_text}")));
    };
    // A revoked certificate may be a peer's: plays stop naming it now.
    inner.forget_sources();
    tracing::info!(what = %what_text, orders = done.orders, tickets = done.tickets, certificates = done.certificates, "revoked");
    let answer = answers::Revoked { revoked: what, orders: done.orders, tickets: done.tickets, certificates: done.certificates };
    Ok(json_response(StatusCode::OK, &answer))
}

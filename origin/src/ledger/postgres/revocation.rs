//! Revocations on the shared state: a serial, an order's whole lineage (under
//! its row lock, as plays take it), a customer, and the list edges pull.

use super::*;

impl PgState {
    /// Revokes by serial (see the embedded engine).
    pub fn revoke_serial(&self, serial: &[u8; 16], now: u64) -> Result<Option<Revoked>, OriginError> {
        if let Some(rec) = self.ticket(serial)? {
            return self.revoke_order(rec.order, now);
        }
        if self.query("SELECT 1 FROM certificates WHERE serial = $1", &[&&serial[..]])?.is_empty() {
            return Ok(None);
        }
        self.execute("INSERT INTO revoked (serial, at) VALUES ($1, $2) ON CONFLICT (serial) DO NOTHING", &[&&serial[..], &int(now)])?;
        Ok(Some(Revoked { certificates: 1, ..Revoked::default() }))
    }

    /// Revokes an order's whole lineage, holding its row lock (so no play
    /// of it commits between the sweep and the mark).
    pub fn revoke_order(&self, o: u64, now: u64) -> Result<Option<Revoked>, OriginError> {
        self.transaction("revoke order", |tx| {
            let rows = tx.q("SELECT record FROM orders WHERE id = $1 FOR UPDATE", &[&int(o)])?;
            let Some(order) = rows.first().map(|r| parse::<Order>("order", r.get(0))).transpose()? else { return Ok(None) };
            let mut first = [0u8; 16];
            hex::decode_to_slice(&order.ticket, &mut first).map_err(|_| err("order", format!("{o}: ticket serial is not hex")))?;
            let at = int(now);
            tx.x(
                "INSERT INTO revoked_scopes (kind, id, at) VALUES ($1, $2, $3) ON CONFLICT (kind, id) DO NOTHING",
                &[&SCOPE_ORDER, &int(o), &at],
            )?;
            let mut out = Revoked { orders: 1, ..Revoked::default() };
            let (mut next, mut seen) = (Some(first), std::collections::HashSet::new());
            while let Some(serial) = next.take() {
                if !seen.insert(serial) {
                    break;
                }
                let Some(mut rec) = tx.ticket(&serial)? else { break };
                if let TicketState::Replaced { by } = rec.state {
                    next = Some(by);
                }
                if rec.state == TicketState::Live {
                    rec.state = TicketState::Revoked;
                    tx.put_ticket(&serial, &rec)?;
                }
                tx.x("INSERT INTO revoked (serial, at) VALUES ($1, $2) ON CONFLICT (serial) DO NOTHING", &[&&serial[..], &at])?;
                out.tickets += 1;
            }
            tx.x(
                "INSERT INTO revoked (serial, at) SELECT serial, $2 FROM certificates WHERE order_id = $1 ON CONFLICT (serial) DO NOTHING",
                &[&int(o), &at],
            )?;
            let n: i64 = tx.q("SELECT COUNT(*) FROM certificates WHERE order_id = $1", &[&int(o)])?.first().map(|r| r.get(0)).unwrap_or(0);
            out.certificates = id(n);
            Ok(Some(out))
        })
    }

    /// Revokes a customer: the mark first (durable), then every order.
    pub fn revoke_customer(&self, c: u64, now: u64) -> Result<Option<Revoked>, OriginError> {
        if self.customer(c)?.is_none() {
            return Ok(None);
        }
        self.execute(
            "INSERT INTO revoked_scopes (kind, id, at) VALUES ($1, $2, $3) ON CONFLICT (kind, id) DO NOTHING",
            &[&SCOPE_CUSTOMER, &int(c), &int(now)],
        )?;
        let mut out = Revoked::default();
        for r in self.query("SELECT id FROM orders WHERE customer = $1 ORDER BY id", &[&int(c)])? {
            out += self.revoke_order(id(r.get(0)), now)?.unwrap_or_default();
        }
        Ok(Some(out))
    }

    /// Every revoked serial, with the time.
    pub fn revocations(&self) -> Result<Vec<tranzcast_proto::revocations::RevokedSerial>, OriginError> {
        self.query("SELECT serial, at FROM revoked ORDER BY serial", &[])?
            .iter()
            .map(|r| {
                let serial = r.get::<_, &[u8]>(0).try_into().map_err(|_| err("revoked", "a serial is not 16 bytes"))?;
                Ok(tranzcast_proto::revocations::RevokedSerial { serial, time: id(r.get(1)) })
            })
            .collect()
    }
}

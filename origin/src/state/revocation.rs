//! Revocations (of a serial, an order, a customer: a ticket's whole
//! lineage) and the list edges pull: the same state, its own concern.

use super::*;

impl OriginState {
    /// Revokes by serial: a ticket revokes its whole order (see the module
    /// notes); a certificate (a playback session) is revoked alone. `None`
    /// when the serial is neither.
    pub fn revoke_serial(&self, serial: &[u8; 16], now: u64) -> Result<Option<Revoked>, OriginError> {
        if let Some(rec) = self.ticket(serial)? {
            return self.revoke_order(rec.order, now);
        }
        if self.db.get_cf(self.cf(CF_CERTS)?, serial).map_err(db_err("certificates"))?.is_none() {
            return Ok(None);
        }
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_REVOKED)?, serial, now.to_be_bytes());
        self.write(b)?;
        Ok(Some(Revoked { certificates: 1, ..Revoked::default() }))
    }

    /// Revokes an order: every ticket of it (the chain of replacements from
    /// its first ticket, and any to come: validation checks the order's mark)
    /// and every certificate issued from them. `None` when there is no such order.
    pub fn revoke_order(&self, id: u64, now: u64) -> Result<Option<Revoked>, OriginError> {
        let Some(order) = self.order(id)? else { return Ok(None) };
        let mut first = [0u8; 16];
        hex::decode_to_slice(&order.ticket, &mut first)
            .map_err(|_| OriginError::Storage(format!("order {id}: ticket serial is not hex")))?;
        self.with_stripe((id % STRIPES as u64) as usize, || {
            let mut out = Revoked { orders: 1, ..Revoked::default() };
            let revoked = self.cf(CF_REVOKED)?;
            let at = now.to_be_bytes();
            let mut b = WriteBatch::default();
            b.put_cf(self.cf(CF_REVOKED_SCOPES)?, scope_key(b'o', id), at);
            // The chain of tickets: bounded by the plays of a rental (the
            // seen set guards against a cycle in a corrupt database).
            let mut next = Some(first);
            let mut seen = std::collections::HashSet::new();
            while let Some(serial) = next.take() {
                if !seen.insert(serial) {
                    break;
                }
                let Some(mut rec) = self.ticket(&serial)? else { break };
                if let crate::validation::TicketState::Replaced { by } = rec.state {
                    next = Some(by);
                }
                if rec.state == crate::validation::TicketState::Live {
                    rec.state = crate::validation::TicketState::Revoked;
                    self.put_json(&mut b, CF_TICKETS, &serial, &rec)?;
                }
                b.put_cf(revoked, serial, at);
                out.tickets += 1;
            }
            for item in self.db.prefix_iterator_cf(self.cf(CF_ORDER_CERTS)?, id.to_be_bytes()) {
                let (k, _) = item.map_err(db_err("order certificates"))?;
                if !k.starts_with(&id.to_be_bytes()) {
                    break;
                }
                b.put_cf(revoked, &k[8..], at);
                out.certificates += 1;
            }
            self.write(b)?;
            Ok(Some(out))
        })
    }

    /// Revokes a customer: no new orders, every order's tickets and
    /// certificates revoked. The customer's mark is durable before its orders
    /// are swept. `None` when there is no such customer.
    pub fn revoke_customer(&self, customer: u64, now: u64) -> Result<Option<Revoked>, OriginError> {
        if self.customer(customer)?.is_none() {
            return Ok(None);
        }
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_REVOKED_SCOPES)?, scope_key(b'c', customer), now.to_be_bytes());
        self.write(b)?;
        let mut orders = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf(CF_CUSTOMER_ORDERS)?, customer.to_be_bytes()) {
            let (k, _) = item.map_err(db_err("customer orders"))?;
            if !k.starts_with(&customer.to_be_bytes()) {
                break;
            }
            orders.push(u64::from_be_bytes(k[8..16].try_into().map_err(|_| OriginError::Storage("a customer order key is short".into()))?));
        }
        let mut out = Revoked::default();
        for id in orders {
            out += self.revoke_order(id, now)?.unwrap_or_default();
        }
        Ok(Some(out))
    }

    /// Every revoked serial (tickets and certificates), with the time.
    pub fn revocations(&self) -> Result<Vec<tranzcast_proto::revocations::RevokedSerial>, OriginError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_REVOKED)?, IteratorMode::Start) {
            let (k, v) = item.map_err(db_err("revoked"))?;
            let serial = k.as_ref().try_into().map_err(|_| OriginError::Storage("a revoked serial is not 16 bytes".into()))?;
            out.push(tranzcast_proto::revocations::RevokedSerial {
                serial,
                time: u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
            });
        }
        Ok(out)
    }
}

//! Orders: an order and its first ticket in one synced batch, once per
//! idempotency key when the storefront gives one.

use super::*;

/// What an order with an idempotency key came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderOnce {
    /// A new order.
    Created(u64),
    /// The key's earlier order, made by the same request.
    Existing(u64),
    /// The key was used for another request (its order).
    KeyReused(u64),
}

/// An order with its idempotency key, as the storefront places it.
#[derive(Debug, Clone, Copy)]
pub struct KeyedOrder<'a> {
    /// The storefront's idempotency key.
    pub key: &'a str,
    /// The request's fingerprint (what it asked for).
    pub fingerprint: [u8; 32],
    /// The order.
    pub order: &'a Order,
    /// Its first ticket's serial.
    pub serial: &'a [u8; 16],
    /// Its first ticket's record.
    pub record: &'a TicketRecord,
}

impl OriginState {
    /// Records an order and its first ticket atomically; returns the order number.
    pub fn add_order(&self, order: &Order, serial: &[u8; 16], record: &TicketRecord) -> Result<u64, OriginError> {
        self.write_order(order, serial, record, WriteBatch::default())
    }

    /// As [`OriginState::add_order`], once per idempotency key: a key seen
    /// before gives its order back (with the same request) or is refused
    /// (with another); the key is written in the order's batch, under the
    /// key's lock, so concurrent requests with one key make one order.
    pub fn add_order_once(&self, o: KeyedOrder<'_>) -> Result<OrderOnce, OriginError> {
        let KeyedOrder { key, fingerprint, order, serial, record } = o;
        let h = blake3::hash(key.as_bytes());
        let stripe = (usize::from(h.as_bytes()[0]) << 8 | usize::from(h.as_bytes()[1])) % STRIPES;
        self.with_stripe(stripe, || {
            let cf = self.cf(CF_ORDER_KEYS)?;
            if let Some(v) = self.db.get_cf(cf, key.as_bytes()).map_err(db_err("order keys"))? {
                let (id, fp) = v.split_at(8.min(v.len()));
                let id = u64::from_be_bytes(id.try_into().map_err(|_| OriginError::Storage("an order key record is short".into()))?);
                return Ok(if fp == fingerprint { OrderOnce::Existing(id) } else { OrderOnce::KeyReused(id) });
            }
            // The number is taken here: the key's record holds it.
            let id = self.next_order.fetch_add(1, Ordering::SeqCst);
            let mut b = WriteBatch::default();
            let mut v = id.to_be_bytes().to_vec();
            v.extend_from_slice(&fingerprint);
            b.put_cf(cf, key.as_bytes(), v);
            self.write_order_numbered(id, order, serial, record, b).map(OrderOnce::Created)
        })
    }

    fn write_order(&self, order: &Order, serial: &[u8; 16], record: &TicketRecord, b: WriteBatch) -> Result<u64, OriginError> {
        let id = self.next_order.fetch_add(1, Ordering::SeqCst);
        self.write_order_numbered(id, order, serial, record, b)
    }

    fn write_order_numbered(
        &self,
        id: u64,
        order: &Order,
        serial: &[u8; 16],
        record: &TicketRecord,
        mut b: WriteBatch,
    ) -> Result<u64, OriginError> {
        let mut rec = record.clone();
        rec.order = id;
        self.put_json(&mut b, CF_ORDERS, &id.to_be_bytes(), order)?;
        self.put_json(&mut b, CF_TICKETS, serial, &rec)?;
        b.put_cf(self.cf(CF_CUSTOMER_ORDERS)?, customer_order_key(order.customer, id), []);
        self.count_play(&mut b, &order.title)?;
        self.write(b)?;
        Ok(id)
    }

    /// The next order number (for the first ticket's record).
    pub fn peek_order(&self) -> u64 {
        self.next_order.load(Ordering::SeqCst)
    }

    /// Number of orders of a title (popularity for pre-casting).
    pub fn orders(&self) -> Result<Vec<Order>, OriginError> {
        self.all_json(CF_ORDERS)
    }

    /// An order.
    pub fn order(&self, id: u64) -> Result<Option<Order>, OriginError> {
        self.get_json(CF_ORDERS, &id.to_be_bytes())
    }
}

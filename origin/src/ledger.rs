//! The origin's state behind one interface, on one of two engines
//! (`state.backend`): the embedded RocksDB of [`crate::state`] (one origin
//! process) or PostgreSQL ([`postgres`]: any number of origins).
//!
//! Both keep the same invariants (see `docs/ARCHITECTURE.md`): a play's
//! read-decide-write holds its order's lock and is durable before the
//! answer; a revocation of the order takes the same lock.

pub mod postgres;
mod schema;

use crate::OriginError;
use crate::state::{Customer, GrantWrite, KeyedOrder, Member, Order, OrderOnce, OriginState, Revoked, TicketView, ValidationEntry};
use crate::validation::TicketRecord;

/// The state engine in use.
#[derive(Debug)]
pub enum Ledger {
    /// RocksDB in `<data_dir>/state`.
    Embedded(OriginState),
    /// A shared PostgreSQL database.
    Postgres(postgres::PgState),
}

macro_rules! on {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Ledger::Embedded($s) => $e,
            Ledger::Postgres($s) => $e,
        }
    };
}

impl Ledger {
    /// The engine's name, for logs and `/metrics`.
    pub fn engine(&self) -> &'static str {
        match self {
            Ledger::Embedded(_) => "rocksdb",
            Ledger::Postgres(_) => "postgres",
        }
    }

    /// Creates a customer; returns its number.
    pub fn add_customer(&self, name: &str, now: u64) -> Result<u64, OriginError> {
        on!(self, s => s.add_customer(name, now))
    }

    /// A customer's profile.
    pub fn customer(&self, id: u64) -> Result<Option<Customer>, OriginError> {
        on!(self, s => s.customer(id))
    }

    /// Records an order and its first ticket atomically; returns the order number.
    pub fn add_order(&self, order: &Order, serial: &[u8; 16], record: &TicketRecord) -> Result<u64, OriginError> {
        on!(self, s => s.add_order(order, serial, record))
    }

    /// An order once per idempotency key (across origins too).
    pub fn add_order_once(&self, o: KeyedOrder<'_>) -> Result<OrderOnce, OriginError> {
        on!(self, s => s.add_order_once(o))
    }

    /// A hint of the next order number for the first ticket's record (the
    /// number written is the order's own).
    pub fn peek_order(&self) -> u64 {
        on!(self, s => s.peek_order())
    }

    /// Every order.
    pub fn orders(&self) -> Result<Vec<Order>, OriginError> {
        on!(self, s => s.orders())
    }

    /// An order.
    pub fn order(&self, id: u64) -> Result<Option<Order>, OriginError> {
        on!(self, s => s.order(id))
    }

    /// A ticket's record.
    pub fn ticket(&self, serial: &[u8; 16]) -> Result<Option<TicketRecord>, OriginError> {
        on!(self, s => s.ticket(serial))
    }

    /// Whether a serial (a ticket's or a certificate's) is revoked.
    pub fn is_revoked(&self, serial: &[u8; 16]) -> Result<bool, OriginError> {
        on!(self, s => s.is_revoked(serial))
    }

    /// Whether a customer has been revoked (no new orders).
    pub fn customer_revoked(&self, customer: u64) -> Result<bool, OriginError> {
        on!(self, s => s.customer_revoked(customer))
    }

    /// A validation's read-decide-write, atomic with every other play of
    /// the ticket's order and with its revocation, durable before it returns.
    /// `decide` may run more than once (after a conflict on a shared engine):
    /// it must only compute its answer.
    pub fn validate<T>(&self, serial: &[u8; 16], decide: impl FnMut(TicketView) -> (T, Option<GrantWrite>)) -> Result<T, OriginError> {
        on!(self, s => s.validate(serial, decide))
    }

    /// Counts a refused play of a genuine ticket.
    pub fn count_refusal(&self, serial: &[u8; 16], result: &str) -> Result<(), OriginError> {
        on!(self, s => s.count_refusal(serial, result))
    }

    /// Refused plays of genuine tickets: (serial hex, result, count).
    pub fn refusals(&self) -> Result<Vec<(String, String, u64)>, OriginError> {
        on!(self, s => s.refusals())
    }

    /// Orders plus granted plays per title.
    pub fn popularity(&self) -> Result<Vec<(String, u64)>, OriginError> {
        on!(self, s => s.popularity())
    }

    /// The validation log, oldest first.
    pub fn validations(&self) -> Result<Vec<ValidationEntry>, OriginError> {
        on!(self, s => s.validations())
    }

    /// Adds or refreshes a member.
    pub fn upsert_member(&self, m: &Member) -> Result<(), OriginError> {
        on!(self, s => s.upsert_member(m))
    }

    /// Retires a member.
    pub fn retire_member(&self, name: &str, now_ms: u64) -> Result<(), OriginError> {
        on!(self, s => s.retire_member(name, now_ms))
    }

    /// When `name` was last retired (Unix milliseconds), if ever.
    pub fn retired_at(&self, name: &str) -> Result<Option<u64>, OriginError> {
        on!(self, s => s.retired_at(name))
    }

    /// A member by name, with its record as stored (for [`Ledger::put_member_if`]).
    pub fn member_as_stored(&self, name: &str) -> Result<Option<(Member, Vec<u8>)>, OriginError> {
        on!(self, s => s.member_as_stored(name))
    }

    /// Writes a member's record if the stored one is still `was` (`None`:
    /// no record): false when another origin wrote or retired it since it
    /// was read. On the embedded engine the caller's lock already
    /// serialises joins (one process): always written.
    pub fn put_member_if(&self, m: &Member, was: Option<&[u8]>) -> Result<bool, OriginError> {
        match self {
            Ledger::Embedded(s) => s.upsert_member(m).map(|()| true),
            Ledger::Postgres(s) => s.put_member_if(m, was),
        }
    }

    /// A member by name.
    pub fn member(&self, name: &str) -> Result<Option<Member>, OriginError> {
        on!(self, s => s.member(name))
    }

    /// Every member.
    pub fn members(&self) -> Result<Vec<Member>, OriginError> {
        on!(self, s => s.members())
    }

    /// Members seen since `cutoff_ms` (their last heartbeat).
    pub fn live_members(&self, cutoff_ms: u64) -> Result<Vec<Member>, OriginError> {
        Ok(self.members()?.into_iter().filter(|m| m.last_seen_ms >= cutoff_ms).collect())
    }

    /// Whether a peer's record still belongs to its certificate: seen since
    /// `cutoff_ms`, certificate unexpired at `now_secs` and unrevoked (an
    /// unreadable revocation counts as revoked: fails closed).
    pub fn peer_live(&self, m: &Member, cutoff_ms: u64, now_secs: u64) -> bool {
        let revoked = m.serial.as_deref().and_then(|s| {
            let mut b = [0u8; 16];
            hex::decode_to_slice(s, &mut b).ok()?;
            self.is_revoked(&b).ok()
        });
        m.last_seen_ms >= cutoff_ms && m.expires.is_some_and(|e| e > now_secs) && revoked == Some(false)
    }

    /// Revokes by serial: a ticket's whole order, or one certificate.
    pub fn revoke_serial(&self, serial: &[u8; 16], now: u64) -> Result<Option<Revoked>, OriginError> {
        on!(self, s => s.revoke_serial(serial, now))
    }

    /// Revokes an order's whole lineage.
    pub fn revoke_order(&self, id: u64, now: u64) -> Result<Option<Revoked>, OriginError> {
        on!(self, s => s.revoke_order(id, now))
    }

    /// Revokes a customer and every order of theirs.
    pub fn revoke_customer(&self, customer: u64, now: u64) -> Result<Option<Revoked>, OriginError> {
        on!(self, s => s.revoke_customer(customer, now))
    }

    /// Every revoked serial, with the time.
    pub fn revocations(&self) -> Result<Vec<tranzcast_proto::revocations::RevokedSerial>, OriginError> {
        on!(self, s => s.revocations())
    }

    /// The shared engine, if this origin is one of several.
    pub fn shared(&self) -> Option<&postgres::PgState> {
        match self {
            Ledger::Postgres(s) => Some(s),
            Ledger::Embedded(_) => None,
        }
    }
}

//! The origin's commerce state in RocksDB: customers, orders, the ticket
//! database (Fig. 5's ticket database 118), the validation log (e-commerce
//! data 117), revocations and cluster members.
//!
//! Every mutation is one synced write batch: durable once acknowledged.
//! Validation takes a lock striped by the ticket's order, so two requests
//! with one ticket are serialised while different tickets proceed in
//! parallel; plays on the runtime join a group commit (`validate.rs`: one
//! WAL sync for every play waiting). Only granted plays enter the
//! validation log; refusals cost no synced write (a counter merged in).
//!
//! Popularity (orders plus granted plays per title, for pre-casting) is a
//! counter per title, added to in the same batch as the order or the grant
//! by a merge (no read, no lock), so reading it never scans the log.
//!
//! Revocation reaches a whole lineage: a rental's tickets form a chain (each
//! play replaces the ticket with a new serial), so revoking any ticket
//! revokes its order: every ticket of it, replacements to come included, and
//! every certificate issued from any of them. Validation and revocation of an
//! order hold the same lock (striped by order number), so no grant can slip
//! between a revocation's sweep of the order's certificates and its mark; a
//! customer's mark is written before its orders are swept, so a grant either
//! sees the mark or finished before its order's sweep (which then finds its
//! certificate).

use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::OriginError;
use crate::validation::TicketRecord;

mod orders;
mod revocation;
mod validate;
pub use orders::{KeyedOrder, OrderOnce};
pub use validate::{GrantWrite, TicketView};

const CF_CUSTOMERS: &str = "customers";
const CF_ORDERS: &str = "orders";
const CF_TICKETS: &str = "tickets";
const CF_CERTS: &str = "certificates";
const CF_VALIDATIONS: &str = "validations";
const CF_REVOKED: &str = "revoked";
const CF_MEMBERS: &str = "members";
const CF_POPULARITY: &str = "popularity";
/// Refused plays of genuine tickets: serial (16 bytes) + result -> count.
const CF_REFUSALS: &str = "refusals";
/// order (8 bytes, big-endian) + certificate serial -> ticket serial + expiry (u64 BE).
const CF_ORDER_CERTS: &str = "order_certificates";
/// customer (8 bytes BE) + order (8 bytes BE) -> nothing.
const CF_CUSTOMER_ORDERS: &str = "customer_orders";
/// b'o' + order (BE) or b'c' + customer (BE) -> revoked at (Unix seconds, BE).
const CF_REVOKED_SCOPES: &str = "revoked_scopes";
/// An order's idempotency key -> order number (8 bytes BE) + the request's fingerprint (32).
const CF_ORDER_KEYS: &str = "order_keys";
/// A retired member's name -> retired at (Unix milliseconds, BE): its
/// credentials issued up to then are refused.
const CF_RETIRED_MEMBERS: &str = "retired_members";
/// Markers of one-off work done on this database.
const CF_META: &str = "meta";
/// The order and customer indexes are complete (built from the orders and
/// certificates once, when a database from before them is opened).
const INDEXES_BUILT: &[u8] = b"lineage_indexes";
const STRIPES: usize = 256;
/// Marks the popularity counters as complete (counted from the log once,
/// when a database from before them is opened). Not a title id: those
/// start with a letter or digit.
const POPULARITY_BUILT: &[u8] = b"\0built";

/// The popularity merge: the sum of little-endian u64 operands.
fn add_counts(_key: &[u8], existing: Option<&[u8]>, operands: &rocksdb::MergeOperands) -> Option<Vec<u8>> {
    let read = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let mut n = existing.map_or(0, read);
    for op in operands {
        n = n.wrapping_add(read(op));
    }
    Some(n.to_le_bytes().to_vec())
}

/// A customer profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// Display name.
    pub name: String,
    /// Created, Unix seconds.
    pub created: u64,
}

/// What was ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum OrderKind {
    /// A purchase: unlimited plays, never expires.
    Buy,
    /// A rental: some plays within some hours.
    Rent {
        /// Plays.
        plays: u32,
        /// Hours from the order.
        hours: u32,
    },
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Customer number.
    pub customer: u64,
    /// Title.
    pub title: String,
    /// Purchase or rental.
    #[serde(flatten)]
    pub kind: OrderKind,
    /// Created, Unix seconds.
    pub created: u64,
    /// The first ticket's serial, hex.
    pub ticket: String,
}

/// One line of the validation log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationEntry {
    /// Unix seconds.
    pub time: u64,
    /// Ticket serial, hex ("" when the ticket could not be read).
    pub serial: String,
    /// Customer number (0 when unknown).
    pub customer: u64,
    /// Title ("" when unknown).
    pub title: String,
    /// The client's address.
    pub client: String,
    /// "granted" or the refusal code.
    pub result: String,
}

/// A cluster member as the origin knows it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Unique name.
    pub name: String,
    /// "node", "edge" or "peer".
    pub role: String,
    /// HTTPS base URL.
    pub https: String,
    /// HTTP/3 address (host:port).
    pub h3: String,
    /// Last heartbeat, Unix milliseconds.
    pub last_seen_ms: u64,
    /// Load reported with the last heartbeat (0..1).
    #[serde(default)]
    pub load: f64,
    /// For peers: the secret the origin pushes pre-cast segments with. Never listed publicly.
    pub push_token: Option<String>,
    /// For edges: the X25519 public key (hex) playback tokens are sealed to.
    pub playback_key: Option<String>,
    /// Health reported with the last heartbeat ("ok", or why not; absent: ok).
    pub health: Option<String>,
    /// For peers: the serial (hex) of the certificate it joined with. Its
    /// record and push token are bound to it: another certificate cannot
    /// take them while this one is live.
    pub serial: Option<String>,
    /// For peers: when that certificate expires (Unix seconds).
    pub expires: Option<u64>,
}

// The push token is a peer's secret: never printed.
tranzcast_proto::debug_redacted!(Member { name, role, https, h3, last_seen_ms, load, playback_key, health, serial, expires } redact { push_token });

impl Member {
    /// Whether the member said it was healthy at its last heartbeat.
    pub fn healthy(&self) -> bool {
        self.health.as_deref().is_none_or(|h| h == "ok")
    }
}

/// What a revocation reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Revoked {
    /// Orders revoked (all their tickets, now and to come).
    pub orders: u64,
    /// Tickets on record that were revoked.
    pub tickets: u64,
    /// Certificates (playback sessions) revoked.
    pub certificates: u64,
}

impl std::ops::AddAssign for Revoked {
    fn add_assign(&mut self, o: Self) {
        self.orders += o.orders;
        self.tickets += o.tickets;
        self.certificates += o.certificates;
    }
}

/// The origin's durable state.
pub struct OriginState {
    db: std::sync::Arc<DB>,
    /// Writes plays' batches, many under one WAL sync (see `validate`).
    committer: validate::Committer,
    dir: PathBuf,
    next_customer: AtomicU64,
    next_order: AtomicU64,
    log_seq: AtomicU64,
    /// Async locks: a play holds its stripe across the group commit it
    /// awaits; synchronous paths take them with `blocking_lock`.
    stripes: Vec<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

impl std::fmt::Debug for OriginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginState").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn db_err(context: &str) -> impl FnOnce(rocksdb::Error) -> OriginError + '_ {
    move |e| OriginError::Storage(format!("{context}: {e}"))
}

impl OriginState {
    /// Opens (or creates) the state database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, OriginError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        let mut counters = Options::default();
        counters.set_merge_operator_associative("tranzcast-add-u64", add_counts);
        let cfs = [
            CF_CUSTOMERS,
            CF_ORDERS,
            CF_TICKETS,
            CF_CERTS,
            CF_VALIDATIONS,
            CF_REVOKED,
            CF_MEMBERS,
            CF_ORDER_CERTS,
            CF_CUSTOMER_ORDERS,
            CF_REVOKED_SCOPES,
            CF_META,
            CF_ORDER_KEYS,
            CF_RETIRED_MEMBERS,
        ]
        .into_iter()
        .map(|n| ColumnFamilyDescriptor::new(n, Options::default()))
        .chain([ColumnFamilyDescriptor::new(CF_POPULARITY, counters.clone()), ColumnFamilyDescriptor::new(CF_REFUSALS, counters)]);
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| {
            if e.to_string().contains("lock") {
                OriginError::Storage(format!("{}: locked by another process", dir.display()))
            } else {
                OriginError::Storage(format!("{}: cannot open: {e}", dir.display()))
            }
        })?;
        let db = std::sync::Arc::new(db);
        let s = Self {
            committer: validate::Committer::start(db.clone())?,
            db,
            dir: dir.into(),
            next_customer: AtomicU64::new(1),
            next_order: AtomicU64::new(1),
            log_seq: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| std::sync::Arc::new(tokio::sync::Mutex::new(()))).collect(),
        };
        s.next_customer.store(s.last_u64_key(CF_CUSTOMERS)? + 1, Ordering::SeqCst);
        s.next_order.store(s.last_u64_key(CF_ORDERS)? + 1, Ordering::SeqCst);
        s.build_popularity()?;
        s.build_indexes()?;
        Ok(s)
    }

    /// Indexes certificates by order and orders by customer once, for a
    /// database from before them (or a new one: nothing to index), so a
    /// revocation of an order or a customer reaches what was issued before.
    fn build_indexes(&self) -> Result<(), OriginError> {
        let meta = self.cf(CF_META)?;
        if self.db.get_cf(meta, INDEXES_BUILT).map_err(db_err("meta"))?.is_some() {
            return Ok(());
        }
        let mut b = WriteBatch::default();
        for item in self.db.iterator_cf(self.cf(CF_ORDERS)?, IteratorMode::Start) {
            let (k, v) = item.map_err(db_err("orders"))?;
            let o: Order = serde_json::from_slice(&v).map_err(|e| OriginError::Storage(e.to_string()))?;
            let id = u64::from_be_bytes(k.as_ref().try_into().map_err(|_| OriginError::Storage("an order key is not 8 bytes".into()))?);
            b.put_cf(self.cf(CF_CUSTOMER_ORDERS)?, customer_order_key(o.customer, id), []);
        }
        for item in self.db.iterator_cf(self.cf(CF_CERTS)?, IteratorMode::Start) {
            let (cert, ticket) = item.map_err(db_err("certificates"))?;
            let (Ok(cert), Ok(ticket)) = (<[u8; 16]>::try_from(cert.as_ref()), <[u8; 16]>::try_from(ticket.as_ref())) else { continue };
            if let Some(rec) = self.ticket(&ticket)? {
                // Expiry unknown for these: kept as never.
                b.put_cf(self.cf(CF_ORDER_CERTS)?, order_cert_key(rec.order, &cert), order_cert_value(&ticket, 0));
            }
        }
        b.put_cf(meta, INDEXES_BUILT, []);
        self.write(b)
    }

    /// Counts popularity from the orders and the log once, for a database
    /// from before the counters (or a new one: nothing to count).
    fn build_popularity(&self) -> Result<(), OriginError> {
        let cf = self.cf(CF_POPULARITY)?;
        if self.db.get_cf(cf, POPULARITY_BUILT).map_err(db_err("popularity"))?.is_some() {
            return Ok(());
        }
        let mut counts = std::collections::BTreeMap::<String, u64>::new();
        for o in self.orders()? {
            *counts.entry(o.title).or_default() += 1;
        }
        for item in self.db.iterator_cf(self.cf(CF_VALIDATIONS)?, IteratorMode::Start) {
            let (_, v) = item.map_err(db_err("validations"))?;
            let e: ValidationEntry = serde_json::from_slice(&v).map_err(|e| OriginError::Storage(e.to_string()))?;
            if e.result == "granted" {
                *counts.entry(e.title).or_default() += 1;
            }
        }
        let mut b = WriteBatch::default();
        for (title, n) in counts {
            b.put_cf(cf, title.as_bytes(), n.to_le_bytes());
        }
        b.put_cf(cf, POPULARITY_BUILT, []);
        self.write(b)
    }

    fn count_play(&self, batch: &mut WriteBatch, title: &str) -> Result<(), OriginError> {
        batch.merge_cf(self.cf(CF_POPULARITY)?, title.as_bytes(), 1u64.to_le_bytes());
        Ok(())
    }

    /// Counts a refused play of a genuine ticket (its serial is ours): one
    /// record per ticket and result however often it is replayed, merged in
    /// without fsync (evidence, not a decision: losing the last few on a
    /// crash costs nothing that guards money).
    pub fn count_refusal(&self, serial: &[u8; 16], result: &str) -> Result<(), OriginError> {
        let mut key = serial.to_vec();
        key.extend_from_slice(result.as_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db.merge_cf_opt(self.cf(CF_REFUSALS)?, key, 1u64.to_le_bytes(), &wo).map_err(db_err("refusals"))
    }

    /// Refused plays of genuine tickets: (serial hex, result, count).
    pub fn refusals(&self) -> Result<Vec<(String, String, u64)>, OriginError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_REFUSALS)?, IteratorMode::Start) {
            let (k, v) = item.map_err(db_err("refusals"))?;
            if k.len() < 16 {
                continue;
            }
            let (serial, result) = k.split_at(16);
            out.push((
                hex::encode(serial),
                String::from_utf8_lossy(result).into_owned(),
                u64::from_le_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
            ));
        }
        Ok(out)
    }

    /// Orders plus granted plays per title, from the kept counters.
    pub fn popularity(&self) -> Result<Vec<(String, u64)>, OriginError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_POPULARITY)?, IteratorMode::Start) {
            let (k, v) = item.map_err(db_err("popularity"))?;
            if k.as_ref() == POPULARITY_BUILT {
                continue;
            }
            let title = String::from_utf8(k.to_vec()).map_err(|_| OriginError::Storage("popularity: a title is not UTF-8".into()))?;
            out.push((title, u64::from_le_bytes(v.as_ref().try_into().unwrap_or([0; 8]))));
        }
        Ok(out)
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, OriginError> {
        self.db.cf_handle(name).ok_or_else(|| OriginError::Storage(format!("column family {name} missing")))
    }

    fn last_u64_key(&self, cf: &str) -> Result<u64, OriginError> {
        let mut it = self.db.iterator_cf(self.cf(cf)?, IteratorMode::End);
        match it.next() {
            Some(Ok((k, _))) => Ok(u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]))),
            Some(Err(e)) => Err(OriginError::Storage(e.to_string())),
            None => Ok(0),
        }
    }

    fn write(&self, batch: WriteBatch) -> Result<(), OriginError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo).map_err(db_err("write"))
    }

    fn get_json<T: DeserializeOwned>(&self, cf: &str, key: &[u8]) -> Result<Option<T>, OriginError> {
        match self.db.get_pinned_cf(self.cf(cf)?, key).map_err(db_err("read"))? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| OriginError::Storage(format!("corrupt {cf} record: {e}"))),
            None => Ok(None),
        }
    }

    /// Every record of `cf`, in key order.
    fn all_json<T: DeserializeOwned>(&self, cf: &str) -> Result<Vec<T>, OriginError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(cf)?, IteratorMode::Start) {
            let (_, v) = item.map_err(db_err(cf))?;
            out.push(serde_json::from_slice(&v).map_err(|e| OriginError::Storage(format!("corrupt {cf} record: {e}")))?);
        }
        Ok(out)
    }

    fn put_json(&self, batch: &mut WriteBatch, cf: &str, key: &[u8], value: &impl Serialize) -> Result<(), OriginError> {
        let v = serde_json::to_vec(value).map_err(|e| OriginError::Storage(e.to_string()))?;
        batch.put_cf(self.cf(cf)?, key, v);
        Ok(())
    }

    /// Creates a customer; returns its number.
    pub fn add_customer(&self, name: &str, now: u64) -> Result<u64, OriginError> {
        let id = self.next_customer.fetch_add(1, Ordering::SeqCst);
        let mut b = WriteBatch::default();
        self.put_json(&mut b, CF_CUSTOMERS, &id.to_be_bytes(), &Customer { name: name.into(), created: now })?;
        self.write(b)?;
        Ok(id)
    }

    /// A customer's profile.
    pub fn customer(&self, id: u64) -> Result<Option<Customer>, OriginError> {
        self.get_json(CF_CUSTOMERS, &id.to_be_bytes())
    }

    /// A ticket's record.
    pub fn ticket(&self, serial: &[u8; 16]) -> Result<Option<TicketRecord>, OriginError> {
        self.get_json(CF_TICKETS, serial)
    }

    /// Runs `f` holding the lock of the stripe of `serial`'s order (of the
    /// serial itself when it is not on record): the read-decide-write of one
    /// ticket is atomic with respect to every other request for it and to a
    /// revocation of its order. A ticket's order never changes, so reading it
    /// before the lock is safe.
    pub fn with_ticket_lock<T>(&self, serial: &[u8; 16], f: impl FnOnce() -> T) -> Result<T, OriginError> {
        Ok(self.with_stripe(self.ticket_stripe(serial)?, f))
    }

    /// The stripe of `serial`'s order (of the serial itself when it is not on record).
    fn ticket_stripe(&self, serial: &[u8; 16]) -> Result<usize, OriginError> {
        Ok(match self.ticket(serial)? {
            Some(rec) => (rec.order % STRIPES as u64) as usize,
            None => (usize::from(serial[0]) << 8 | usize::from(serial[1])) % STRIPES,
        })
    }

    fn with_stripe<T>(&self, i: usize, f: impl FnOnce() -> T) -> T {
        // Synchronous paths run on the blocking pool, never on the runtime.
        let _g = self.stripes[i % STRIPES].blocking_lock();
        f()
    }

    /// Whether a ticket's order or its customer has been revoked. Read under
    /// the ticket's lock by validation.
    pub fn lineage_revoked(&self, rec: &TicketRecord) -> Result<bool, OriginError> {
        let cf = self.cf(CF_REVOKED_SCOPES)?;
        Ok(self.db.get_pinned_cf(cf, scope_key(b'o', rec.order)).map_err(db_err("revoked scopes"))?.is_some()
            || self.db.get_pinned_cf(cf, scope_key(b'c', rec.customer)).map_err(db_err("revoked scopes"))?.is_some())
    }

    /// Whether a serial (a ticket's or a certificate's) is on the revoked list.
    pub fn is_revoked(&self, serial: &[u8; 16]) -> Result<bool, OriginError> {
        Ok(self.db.get_pinned_cf(self.cf(CF_REVOKED)?, serial).map_err(db_err("revoked"))?.is_some())
    }

    /// Whether a customer has been revoked (no new orders).
    pub fn customer_revoked(&self, customer: u64) -> Result<bool, OriginError> {
        Ok(self.db.get_pinned_cf(self.cf(CF_REVOKED_SCOPES)?, scope_key(b'c', customer)).map_err(db_err("revoked scopes"))?.is_some())
    }

    /// Writes a granted validation in one synced batch: the presented
    /// ticket's new record, the replacement's record, the certificate's link
    /// to its ticket, the log line and the title's popularity.
    pub fn validation_batch(
        &self,
        presented: Option<(&[u8; 16], &TicketRecord)>,
        replacement: Option<(&[u8; 16], &TicketRecord)>,
        certificate: Option<IssuedCertificate<'_>>,
        entry: &ValidationEntry,
    ) -> Result<WriteBatch, OriginError> {
        let mut b = WriteBatch::default();
        if let Some((s, r)) = presented {
            self.put_json(&mut b, CF_TICKETS, s, r)?;
        }
        if let Some((s, r)) = replacement {
            self.put_json(&mut b, CF_TICKETS, s, r)?;
        }
        if let Some(c) = certificate {
            b.put_cf(self.cf(CF_CERTS)?, c.serial, c.ticket);
            b.put_cf(self.cf(CF_ORDER_CERTS)?, order_cert_key(c.order, c.serial), order_cert_value(c.ticket, c.expires));
        }
        let seq = self.log_seq.fetch_add(1, Ordering::SeqCst);
        let mut key = entry.time.to_be_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        key.extend_from_slice(&crate::random16());
        self.put_json(&mut b, CF_VALIDATIONS, &key, entry)?;
        if entry.result == "granted" {
            self.count_play(&mut b, &entry.title)?;
        }
        Ok(b)
    }

    /// The validation log, oldest first.
    pub fn validations(&self) -> Result<Vec<ValidationEntry>, OriginError> {
        self.all_json(CF_VALIDATIONS)
    }

    /// Adds or refreshes a member.
    pub fn upsert_member(&self, m: &Member) -> Result<(), OriginError> {
        let mut b = WriteBatch::default();
        self.put_json(&mut b, CF_MEMBERS, m.name.as_bytes(), m)?;
        let mut wo = WriteOptions::default();
        wo.set_sync(false); // heartbeats are soft state
        self.db.write_opt(b, &wo).map_err(db_err("member"))
    }

    /// Retires a member: every credential of `name` issued up to `now_ms`
    /// is refused from now on (written durably), and its record goes.
    pub fn retire_member(&self, name: &str, now_ms: u64) -> Result<(), OriginError> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf(CF_RETIRED_MEMBERS)?, name.as_bytes(), now_ms.to_be_bytes());
        b.delete_cf(self.cf(CF_MEMBERS)?, name.as_bytes());
        self.write(b)
    }

    /// When `name` was last retired (Unix milliseconds), if ever.
    pub fn retired_at(&self, name: &str) -> Result<Option<u64>, OriginError> {
        let v = self.db.get_pinned_cf(self.cf(CF_RETIRED_MEMBERS)?, name.as_bytes()).map_err(db_err("retired members"))?;
        Ok(v.and_then(|v| <[u8; 8]>::try_from(&v[..]).ok()).map(u64::from_be_bytes))
    }

    /// A member by name.
    pub fn member(&self, name: &str) -> Result<Option<Member>, OriginError> {
        self.get_json(CF_MEMBERS, name.as_bytes())
    }

    /// A member by name, with its record's bytes as stored.
    pub fn member_as_stored(&self, name: &str) -> Result<Option<(Member, Vec<u8>)>, OriginError> {
        let raw = self.db.get_cf(self.cf(CF_MEMBERS)?, name.as_bytes()).map_err(db_err("member"))?;
        raw.map(|b| serde_json::from_slice(&b).map(|m| (m, b)).map_err(|e| OriginError::Storage(format!("corrupt members record: {e}"))))
            .transpose()
    }

    /// Every member.
    pub fn members(&self) -> Result<Vec<Member>, OriginError> {
        self.all_json(CF_MEMBERS)
    }
}

/// A certificate granted by a validation, as written with it.
#[derive(Debug, Clone, Copy)]
pub struct IssuedCertificate<'a> {
    /// The certificate's serial.
    pub serial: &'a [u8; 16],
    /// The ticket it was issued from.
    pub ticket: &'a [u8; 16],
    /// That ticket's order.
    pub order: u64,
    /// The certificate's expiry, Unix seconds.
    pub expires: u64,
}

fn scope_key(kind: u8, id: u64) -> [u8; 9] {
    let mut k = [kind; 9];
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn customer_order_key(customer: u64, order: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&customer.to_be_bytes());
    k[8..].copy_from_slice(&order.to_be_bytes());
    k
}

fn order_cert_key(order: u64, cert: &[u8; 16]) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&order.to_be_bytes());
    k[8..].copy_from_slice(cert);
    k
}

fn order_cert_value(ticket: &[u8; 16], expires: u64) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[..16].copy_from_slice(ticket);
    v[16..].copy_from_slice(&expires.to_be_bytes());
    v
}

//! The origin's commerce state in RocksDB: customers, orders, the ticket
//! database (Fig. 5's ticket database 118), the validation log (e-commerce
//! data 117), revocations and cluster members.
//!
//! Every mutation is one synced write batch: durable once acknowledged.
//! Validation takes a lock striped by serial number, so two requests with the
//! same ticket are serialised while different tickets proceed in parallel
//! (and RocksDB groups their fsyncs). Only granted plays enter the
//! validation log; refusals cost no write (they are counted in memory).
//!
//! Popularity (orders plus granted plays per title, for pre-casting) is a
//! counter per title, added to in the same batch as the order or the grant
//! by a merge (no read, no lock), so reading it never scans the log.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::OriginError;
use crate::validation::TicketRecord;

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(default)]
    pub push_token: Option<String>,
    /// For edges: the X25519 public key (hex) playback tokens are sealed to.
    #[serde(default)]
    pub playback_key: Option<String>,
}

/// The origin's durable state.
pub struct OriginState {
    db: DB,
    dir: PathBuf,
    next_customer: AtomicU64,
    next_order: AtomicU64,
    log_seq: AtomicU64,
    stripes: Vec<Mutex<()>>,
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
        let cfs = [CF_CUSTOMERS, CF_ORDERS, CF_TICKETS, CF_CERTS, CF_VALIDATIONS, CF_REVOKED, CF_MEMBERS]
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
        let s = Self {
            db,
            dir: dir.into(),
            next_customer: AtomicU64::new(1),
            next_order: AtomicU64::new(1),
            log_seq: AtomicU64::new(0),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        };
        s.next_customer.store(s.last_u64_key(CF_CUSTOMERS)? + 1, Ordering::SeqCst);
        s.next_order.store(s.last_u64_key(CF_ORDERS)? + 1, Ordering::SeqCst);
        s.build_popularity()?;
        Ok(s)
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

    /// Records an order and its first ticket atomically; returns the order number.
    pub fn add_order(&self, order: &Order, serial: &[u8; 16], record: &TicketRecord) -> Result<u64, OriginError> {
        let id = self.next_order.fetch_add(1, Ordering::SeqCst);
        let mut rec = record.clone();
        rec.order = id;
        let mut b = WriteBatch::default();
        self.put_json(&mut b, CF_ORDERS, &id.to_be_bytes(), order)?;
        self.put_json(&mut b, CF_TICKETS, serial, &rec)?;
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
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_ORDERS)?, IteratorMode::Start) {
            let (_, v) = item.map_err(db_err("orders"))?;
            out.push(serde_json::from_slice(&v).map_err(|e| OriginError::Storage(e.to_string()))?);
        }
        Ok(out)
    }

    /// A ticket's record.
    pub fn ticket(&self, serial: &[u8; 16]) -> Result<Option<TicketRecord>, OriginError> {
        self.get_json(CF_TICKETS, serial)
    }

    /// Runs `f` holding the lock of `serial`'s stripe: the read-decide-write
    /// of one ticket is atomic with respect to every other request for it.
    pub fn with_ticket_lock<T>(&self, serial: &[u8; 16], f: impl FnOnce() -> T) -> T {
        let i = (usize::from(serial[0]) << 8 | usize::from(serial[1])) % STRIPES;
        let _g = self.stripes[i].lock().unwrap_or_else(|p| p.into_inner());
        f()
    }

    /// Writes a granted validation in one synced batch: the presented
    /// ticket's new record, the replacement's record, the certificate's link
    /// to its ticket, the log line and the title's popularity.
    pub fn record_validation(
        &self,
        presented: Option<(&[u8; 16], &TicketRecord)>,
        replacement: Option<(&[u8; 16], &TicketRecord)>,
        certificate: Option<(&[u8; 16], &[u8; 16])>,
        entry: &ValidationEntry,
    ) -> Result<(), OriginError> {
        let mut b = WriteBatch::default();
        if let Some((s, r)) = presented {
            self.put_json(&mut b, CF_TICKETS, s, r)?;
        }
        if let Some((s, r)) = replacement {
            self.put_json(&mut b, CF_TICKETS, s, r)?;
        }
        if let Some((cert, ticket)) = certificate {
            b.put_cf(self.cf(CF_CERTS)?, cert, ticket);
        }
        let seq = self.log_seq.fetch_add(1, Ordering::SeqCst);
        let mut key = entry.time.to_be_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        key.extend_from_slice(&crate::random16());
        self.put_json(&mut b, CF_VALIDATIONS, &key, entry)?;
        if entry.result == "granted" {
            self.count_play(&mut b, &entry.title)?;
        }
        self.write(b)
    }

    /// The validation log, oldest first.
    pub fn validations(&self) -> Result<Vec<ValidationEntry>, OriginError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_VALIDATIONS)?, IteratorMode::Start) {
            let (_, v) = item.map_err(db_err("validations"))?;
            out.push(serde_json::from_slice(&v).map_err(|e| OriginError::Storage(e.to_string()))?);
        }
        Ok(out)
    }

    /// Revokes a ticket (and so every certificate issued from it). Returns
    /// false when the serial is unknown.
    pub fn revoke(&self, serial: &[u8; 16], now: u64) -> Result<bool, OriginError> {
        self.with_ticket_lock(serial, || {
            let Some(mut rec) = self.ticket(serial)? else {
                // Not a ticket: a certificate (a playback session) is revoked alone.
                if self.db.get_cf(self.cf(CF_CERTS)?, serial).map_err(db_err("certificates"))?.is_none() {
                    return Ok(false);
                }
                let mut b = WriteBatch::default();
                b.put_cf(self.cf(CF_REVOKED)?, serial, now.to_be_bytes());
                self.write(b)?;
                return Ok(true);
            };
            rec.state = crate::validation::TicketState::Revoked;
            let mut b = WriteBatch::default();
            self.put_json(&mut b, CF_TICKETS, serial, &rec)?;
            b.put_cf(self.cf(CF_REVOKED)?, serial, now.to_be_bytes());
            // Certificates already issued from it are revoked too.
            for item in self.db.iterator_cf(self.cf(CF_CERTS)?, IteratorMode::Start) {
                let (cert, ticket) = item.map_err(db_err("certificates"))?;
                if ticket.as_ref() == serial {
                    b.put_cf(self.cf(CF_REVOKED)?, &cert, now.to_be_bytes());
                }
            }
            self.write(b)?;
            Ok(true)
        })
    }

    /// Every revoked serial (tickets and certificates), hex, with the time.
    pub fn revocations(&self) -> Result<Vec<(String, u64)>, OriginError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_REVOKED)?, IteratorMode::Start) {
            let (k, v) = item.map_err(db_err("revoked"))?;
            out.push((hex::encode(&k), u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8]))));
        }
        Ok(out)
    }

    /// Adds or refreshes a member.
    pub fn upsert_member(&self, m: &Member) -> Result<(), OriginError> {
        let mut b = WriteBatch::default();
        self.put_json(&mut b, CF_MEMBERS, m.name.as_bytes(), m)?;
        let mut wo = WriteOptions::default();
        wo.set_sync(false); // heartbeats are soft state
        self.db.write_opt(b, &wo).map_err(db_err("member"))
    }

    /// A member by name.
    pub fn member(&self, name: &str) -> Result<Option<Member>, OriginError> {
        self.get_json(CF_MEMBERS, name.as_bytes())
    }

    /// Every member.
    pub fn members(&self) -> Result<Vec<Member>, OriginError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_MEMBERS)?, IteratorMode::Start) {
            let (_, v) = item.map_err(db_err("members"))?;
            out.push(serde_json::from_slice(&v).map_err(|e| OriginError::Storage(e.to_string()))?);
        }
        Ok(out)
    }
}

//! The origin's state on PostgreSQL (`state.backend = "postgres"`): any
//! number of origin processes share one database.
//!
//! Every decision that guards money is one transaction that takes the row
//! lock of the ticket's order (`SELECT ... FOR UPDATE`) before it reads the
//! ticket, decides and writes: plays of one ticket on any number of origins,
//! and a revocation of its order, are serialised by the database, and a
//! grant is committed before it is answered. Serialization failures and
//! deadlocks (what CockroachDB and YugabyteDB report under contention) are
//! retried from the top of the transaction.
//!
//! The API is synchronous like the embedded engine's: statements run on a
//! small runtime of their own (its threads drive the connections), and the
//! caller blocks on each, so it works from the blocking pool the routes run
//! on and from async tasks alike. Every statement is bounded
//! (`statement_timeout`, `lock_timeout`), and so are connecting and waiting
//! for a pooled connection.
//!
//! Secrets (the signing key, title keys) rest sealed under the
//! key-encryption key ([`Kek`]); the database never sees them in clear.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use tranzcast_proto::envelope::Kek;

use super::schema;

mod members;
mod revocation;
use crate::OriginError;
use crate::state::{Customer, GrantWrite, KeyedOrder, Member, Order, OrderOnce, Revoked, TicketView, ValidationEntry};
use crate::validation::{TicketRecord, TicketState};

/// How often a transaction is tried again after a conflict.
const ATTEMPTS: usize = 64;
/// Popularity counters are spread over this many rows per title, so the
/// origins' flushes do not queue on one row's lock.
const SHARDS: i16 = 16;
/// Popularity (a hint for pre-casting, not money) is counted in memory and
/// added to the database at most this often: a grant does not wait on a
/// counter row every other grant of its title also writes.
const POPULARITY_FLUSH: Duration = Duration::from_secs(2);
const SCOPE_ORDER: i16 = 1;
const SCOPE_CUSTOMER: i16 = 2;
const KEK_CHECK: &str = "kek-check";

/// Why a statement failed: a conflict worth another attempt, or an error.
enum Fail {
    Retry,
    Error(OriginError),
}

impl From<OriginError> for Fail {
    fn from(e: OriginError) -> Self {
        Fail::Error(e)
    }
}

fn err(context: &str, e: impl std::fmt::Display) -> OriginError {
    OriginError::Storage(format!("postgres: {context}: {e}"))
}

fn classify(context: &str, e: tokio_postgres::Error) -> Fail {
    match e.code() {
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED => Fail::Retry,
        _ => Fail::Error(err(context, e)),
    }
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, OriginError> {
    serde_json::to_vec(v).map_err(|e| err("encode", e))
}

fn parse<T: DeserializeOwned>(what: &str, b: &[u8]) -> Result<T, OriginError> {
    serde_json::from_slice(b).map_err(|e| err(&format!("corrupt {what} record"), e))
}

fn id(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A title as the cluster's catalog holds it.
#[derive(Clone)]
pub struct SharedTitle {
    /// The signed manifest.
    pub manifest: Vec<u8>,
    /// The title key KM (opened from its sealed form).
    pub key: [u8; 32],
}

impl std::fmt::Debug for SharedTitle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTitle").field("manifest", &self.manifest.len()).field("key", &"<redacted>").finish()
    }
}

/// The shared state.
pub struct PgState {
    pool: Pool,
    /// Plays and orders per title not yet added to the database, and when
    /// they last were.
    popularity: std::sync::Mutex<(std::collections::HashMap<String, i64>, std::time::Instant)>,
    /// Drives the connections; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    kek: Kek,
}

impl std::fmt::Debug for PgState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgState").field("kek", &hex::encode(self.kek.id())).finish_non_exhaustive()
    }
}

impl Drop for PgState {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which async code may not; this does not.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// One transaction's statements, run synchronously.
struct Tx<'a, 'b> {
    pg: &'a PgState,
    tx: &'a deadpool_postgres::Transaction<'b>,
}

impl Tx<'_, '_> {
    fn prepared(&self, sql: &str) -> Result<tokio_postgres::Statement, Fail> {
        self.pg.wait(self.tx.prepare_cached(sql)).map_err(|e| classify(sql, e))
    }

    fn q(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Fail> {
        let st = self.prepared(sql)?;
        self.pg.wait(self.tx.query(&st, params)).map_err(|e| classify(sql, e))
    }

    fn x(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Fail> {
        let st = self.prepared(sql)?;
        self.pg.wait(self.tx.execute(&st, params)).map_err(|e| classify(sql, e))
    }

    /// Runs statements pipelined: all sent, then all answers awaited (one
    /// round trip for the lot, in order, in this transaction).
    fn pipeline(&self, batch: &[(&str, &[&(dyn ToSql + Sync)])]) -> Result<(), Fail> {
        let stmts = batch.iter().map(|(sql, _)| self.prepared(sql)).collect::<Result<Vec<_>, _>>()?;
        let runs = stmts.iter().zip(batch).map(|(st, (_, params))| self.tx.execute(st, params));
        self.pg.wait(futures_util::future::try_join_all(runs)).map_err(|e| classify("pipelined writes", e))?;
        Ok(())
    }

    fn ticket(&self, serial: &[u8; 16]) -> Result<Option<TicketRecord>, Fail> {
        let rows = self.q("SELECT record FROM tickets WHERE serial = $1", &[&&serial[..]])?;
        Ok(rows.first().map(|r| parse("ticket", r.get::<_, &[u8]>(0))).transpose()?)
    }

    fn put_ticket(&self, serial: &[u8; 16], rec: &TicketRecord) -> Result<(), Fail> {
        self.x(
            "INSERT INTO tickets (serial, order_id, record) VALUES ($1, $2, $3)
             ON CONFLICT (serial) DO UPDATE SET record = excluded.record",
            &[&&serial[..], &int(rec.order), &json(rec)?],
        )?;
        Ok(())
    }

    fn insert_order(&self, order: &Order, serial: &[u8; 16], record: &TicketRecord) -> Result<u64, Fail> {
        let rows = self.q("INSERT INTO orders (customer, record) VALUES ($1, $2) RETURNING id", &[&int(order.customer), &json(order)?])?;
        let id = id(rows.first().map(|r| r.get(0)).ok_or_else(|| err("orders", "no id returned"))?);
        let mut rec = record.clone();
        rec.order = id;
        self.put_ticket(serial, &rec)?;
        Ok(id)
    }
}

impl PgState {
    /// Connects (bounded), runs the migrations and checks that `kek` opens
    /// this database's secrets (the first origin seals a check value).
    pub fn open(url: &str, pool_size: u32, kek: Kek) -> Result<Self, OriginError> {
        Self::open_with(url, pool_size, kek, None)
    }

    /// As [`PgState::open`]; with `ca_pem`, every connection is TLS and the
    /// database's certificate is checked against these roots.
    pub fn open_with(url: &str, pool_size: u32, kek: Kek, ca_pem: Option<&[u8]>) -> Result<Self, OriginError> {
        let mut cfg: tokio_postgres::Config = url.parse().map_err(|e| err("state.url", e))?;
        use tokio_postgres::config::SslMode;
        match (ca_pem.is_some(), cfg.get_ssl_mode()) {
            (true, SslMode::Disable) => return Err(err("state.url", "sslmode=disable with state.ca: remove one")),
            // With roots, TLS is not a preference: refuse a server without it.
            (true, _) => {
                cfg.ssl_mode(SslMode::Require);
            }
            (false, SslMode::Require) => {
                return Err(err("state.url", "sslmode=require needs state.ca (the roots of the database's certificate)"));
            }
            (false, _) => {
                cfg.ssl_mode(SslMode::Disable);
            }
        }
        cfg.connect_timeout(Duration::from_secs(5));
        cfg.application_name("tranzcast-origin");
        cfg.options("-c statement_timeout=15000 -c lock_timeout=15000 -c idle_in_transaction_session_timeout=30000");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tranzcast-postgres")
            .enable_all()
            .build()
            .map_err(|e| err("runtime", e))?;
        let mc = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let mgr = match ca_pem {
            Some(pem) => {
                let tls = tranzcast_net::tls::client_config(pem, &[]).map_err(|e| err("state.ca", e))?;
                Manager::from_config(cfg, tokio_postgres_rustls::MakeRustlsConnect::new(tls), mc)
            }
            None => Manager::from_config(cfg, NoTls, mc),
        };
        let pool = Pool::builder(mgr)
            .max_size(pool_size as usize)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(15)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| err("pool", e))?;
        let s = Self { pool, popularity: std::sync::Mutex::new((Default::default(), std::time::Instant::now())), rt: Some(rt), kek };
        s.migrate()?;
        s.check_kek()?;
        Ok(s)
    }

    /// Runs `f` to completion on this thread, with this state's runtime
    /// entered (timers and new connections live there; its threads drive
    /// the sockets).
    fn wait<F: Future>(&self, f: F) -> F::Output {
        let _entered = self.rt.as_ref().map(|rt| rt.handle().enter());
        futures_executor::block_on(f)
    }

    fn client(&self) -> Result<deadpool_postgres::Object, OriginError> {
        self.wait(self.pool.get()).map_err(|e| err("connect", e))
    }

    /// Runs `body` in a transaction, again from the top after a conflict.
    fn transaction<T>(&self, what: &str, mut body: impl FnMut(&Tx<'_, '_>) -> Result<T, Fail>) -> Result<T, OriginError> {
        for attempt in 0..ATTEMPTS {
            let mut client = self.client()?;
            let tx = self.wait(client.transaction()).map_err(|e| err(what, e))?;
            let out = body(&Tx { pg: self, tx: &tx });
            match out {
                Ok(v) => match self.wait(tx.commit()) {
                    Ok(()) => return Ok(v),
                    Err(e) => match classify(what, e) {
                        Fail::Retry => {}
                        Fail::Error(e) => return Err(e),
                    },
                },
                Err(Fail::Retry) => drop(tx),
                Err(Fail::Error(e)) => return Err(e),
            }
            // Back off a little, more each time, so contenders spread out.
            std::thread::sleep(Duration::from_micros(200 * (attempt as u64 + 1)));
        }
        Err(err(what, format!("still conflicting after {ATTEMPTS} attempts")))
    }

    fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, OriginError> {
        let client = self.client()?;
        let st = self.wait(client.prepare_cached(sql)).map_err(|e| err(sql, e))?;
        self.wait(client.query(&st, params)).map_err(|e| err(sql, e))
    }

    fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, OriginError> {
        let client = self.client()?;
        let st = self.wait(client.prepare_cached(sql)).map_err(|e| err(sql, e))?;
        self.wait(client.execute(&st, params)).map_err(|e| err(sql, e))
    }

    fn migrate(&self) -> Result<(), OriginError> {
        // Origins starting at once race on the catalog (PostgreSQL can fail
        // one `CREATE ... IF NOT EXISTS` with a duplicate): try again.
        let mut last = None;
        for _ in 0..10 {
            match self.migrate_once() {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(last.unwrap_or_else(|| err("migrate", "failed")))
    }

    fn migrate_once(&self) -> Result<(), OriginError> {
        let client = self.client()?;
        self.wait(client.batch_execute(schema::VERSIONS)).map_err(|e| err("migrate", e))?;
        for (version, sql) in schema::MIGRATIONS {
            let done =
                self.wait(client.query("SELECT 1 FROM tranzcast_schema WHERE version = $1", &[version])).map_err(|e| err("migrate", e))?;
            if !done.is_empty() {
                continue;
            }
            self.wait(client.batch_execute(sql)).map_err(|e| err(&format!("migration {version}"), e))?;
            self.wait(client.execute(
                "INSERT INTO tranzcast_schema (version, applied_at) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING",
                &[version, &int(crate::now_secs())],
            ))
            .map_err(|e| err("migrate", e))?;
            tracing::info!(version, "state schema migrated");
        }
        Ok(())
    }

    fn check_kek(&self) -> Result<(), OriginError> {
        let sealed = self.kek.seal(KEK_CHECK, b"tranzcast");
        self.execute("INSERT INTO secrets (name, sealed) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", &[&KEK_CHECK, &sealed])?;
        let rows = self.query("SELECT sealed FROM secrets WHERE name = $1", &[&KEK_CHECK])?;
        let stored: &[u8] = rows.first().map(|r| r.get(0)).unwrap_or_default();
        self.kek.open(KEK_CHECK, stored).map(|_| ()).map_err(|_| {
            OriginError::Storage(format!(
                "postgres: the key-encryption key (id {}) does not open this database's secrets: another KEK sealed them",
                hex::encode(self.kek.id())
            ))
        })
    }

    /// Re-seals every sealed value of the database (the KEK check, the
    /// signing key, every title key) under `new`, in one serializable
    /// transaction (a title inserted meanwhile fails it, and it runs again):
    /// a value already under `new` is left, any other must open under `old`
    /// or nothing changes (fails closed). So a run after one that stopped,
    /// or after an origin still running published under `old`, finishes
    /// the job. Returns how many values were re-sealed. Run with every
    /// origin stopped: one still running seals what it writes next under
    /// `old`.
    pub fn rekey(&self, old: &Kek, new: &Kek) -> Result<u64, OriginError> {
        self.transaction("rekey", |tx| {
            tx.x("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", &[])?;
            let mut n = 0;
            for r in tx.q("SELECT name, sealed FROM secrets ORDER BY name FOR UPDATE", &[])? {
                let (name, sealed): (String, Vec<u8>) = (r.get(0), r.get(1));
                if new.open(&name, &sealed).is_ok() {
                    continue;
                }
                let clear = old.open(&name, &sealed).map_err(|e| Fail::Error(err(&name, e)))?;
                tx.x("UPDATE secrets SET sealed = $2 WHERE name = $1", &[&name, &new.seal(&name, &clear)])?;
                n += 1;
            }
            for r in tx.q("SELECT title, sealed_key FROM titles ORDER BY title FOR UPDATE", &[])? {
                let (title, sealed): (String, Vec<u8>) = (r.get(0), r.get(1));
                let row = format!("title/{title}");
                if new.open32(&row, &sealed).is_ok() {
                    continue;
                }
                let key = old.open32(&row, &sealed).map_err(|e| Fail::Error(err(&row, e)))?;
                tx.x("UPDATE titles SET sealed_key = $2 WHERE title = $1", &[&title, &new.seal(&row, &key)])?;
                n += 1;
            }
            Ok(n)
        })
    }

    /// The cluster's 32-byte secret `name` (the signing key), if stored.
    pub fn secret(&self, name: &str) -> Result<Option<[u8; 32]>, OriginError> {
        let row = format!("secret/{name}");
        let rows = self.query("SELECT sealed FROM secrets WHERE name = $1", &[&row])?;
        rows.first().map(|r| self.kek.open32(&row, r.get(0)).map_err(|e| err(&row, e))).transpose()
    }

    /// The cluster's secret `name`: the one stored if there is one, else
    /// `ours`, sealed and stored (the first origin to store wins; every
    /// origin then reads the same).
    pub fn share_secret(&self, name: &str, ours: &[u8; 32]) -> Result<[u8; 32], OriginError> {
        let row = format!("secret/{name}");
        self.execute(
            "INSERT INTO secrets (name, sealed) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&row, &self.kek.seal(&row, ours)],
        )?;
        self.secret(name)?.ok_or_else(|| err(&row, "missing after it was written"))
    }

    /// A published title.
    pub fn title(&self, title: &str) -> Result<Option<SharedTitle>, OriginError> {
        let rows = self.query("SELECT manifest, sealed_key FROM titles WHERE title = $1", &[&title])?;
        let Some(r) = rows.first() else { return Ok(None) };
        let key = self.kek.open32(&format!("title/{title}"), r.get(1)).map_err(|e| err("title key", e))?;
        Ok(Some(SharedTitle { manifest: r.get(0), key }))
    }

    /// A published title's signed manifest alone (public routes: its key
    /// stays sealed).
    pub fn title_manifest(&self, title: &str) -> Result<Option<Vec<u8>>, OriginError> {
        Ok(self.query("SELECT manifest FROM titles WHERE title = $1", &[&title])?.first().map(|r| r.get(0)))
    }

    /// Every published title and its signed manifest.
    pub fn titles(&self) -> Result<Vec<(String, Vec<u8>)>, OriginError> {
        Ok(self.query("SELECT title, manifest FROM titles ORDER BY title", &[])?.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Publishes a title to every origin: `Ok(true)` when the database now
    /// holds this manifest (just written, or written before), `Ok(false)`
    /// when it holds another under the same name (two origins published one
    /// title id separately: the first stays).
    pub fn publish_title(&self, title: &str, manifest: &[u8], key: &[u8; 32]) -> Result<bool, OriginError> {
        let sealed = self.kek.seal(&format!("title/{title}"), key);
        self.execute(
            "INSERT INTO titles (title, manifest, sealed_key) VALUES ($1, $2, $3) ON CONFLICT (title) DO NOTHING",
            &[&title, &manifest, &sealed],
        )?;
        Ok(self.title(title)?.is_some_and(|t| t.manifest == manifest && &t.key == key))
    }

    /// Counts an order or a grant of `title` (after its commit).
    fn count_play(&self, title: &str) {
        let due = {
            let mut p = self.popularity.lock().unwrap_or_else(|p| p.into_inner());
            *p.0.entry(title.to_string()).or_default() += 1;
            p.1.elapsed() >= POPULARITY_FLUSH
        };
        if due && let Err(e) = self.flush_popularity() {
            tracing::warn!(error = %e, "popularity counts not written; kept for the next flush");
        }
    }

    /// Adds the counts in memory to the database (one upsert per title, on
    /// a random shard row); on failure they stay for the next flush.
    fn flush_popularity(&self) -> Result<(), OriginError> {
        let counts = {
            let mut p = self.popularity.lock().unwrap_or_else(|p| p.into_inner());
            p.1 = std::time::Instant::now();
            std::mem::take(&mut p.0)
        };
        let mut left = counts.clone();
        for (title, n) in &counts {
            let shard = i16::from(tranzcast_proto::random_bytes::<1>()[0]) % SHARDS;
            let r = self.execute(
                "INSERT INTO popularity (title, shard, n) VALUES ($1, $2, $3)
                 ON CONFLICT (title, shard) DO UPDATE SET n = popularity.n + excluded.n",
                &[title, &shard, n],
            );
            if let Err(e) = r {
                let mut p = self.popularity.lock().unwrap_or_else(|p| p.into_inner());
                for (t, n) in left {
                    *p.0.entry(t).or_default() += n;
                }
                return Err(e);
            }
            left.remove(title);
        }
        Ok(())
    }

    /// Takes or renews the lease `name` for `holder` until `now_ms + ttl_ms`:
    /// true when `holder` holds it now (it was free, expired or its own).
    /// One origin stages a node (or pre-casts to a peer) at a time; when it
    /// dies, another takes over once its lease runs out.
    pub fn lease(&self, name: &str, holder: &[u8; 16], now_ms: u64, ttl_ms: u64) -> Result<bool, OriginError> {
        let rows = self.query(
            "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
             WHERE leases.holder = excluded.holder OR leases.until_ms < $4
             RETURNING holder",
            &[&name, &&holder[..], &int(now_ms.saturating_add(ttl_ms)), &int(now_ms)],
        )?;
        Ok(!rows.is_empty())
    }

    /// Creates a customer; returns its number.
    pub fn add_customer(&self, name: &str, now: u64) -> Result<u64, OriginError> {
        let rec = json(&Customer { name: name.into(), created: now })?;
        let rows = self.query("INSERT INTO customers (record) VALUES ($1) RETURNING id", &[&rec])?;
        Ok(id(rows.first().map(|r| r.get(0)).ok_or_else(|| err("customers", "no id returned"))?))
    }

    /// A customer's profile.
    pub fn customer(&self, c: u64) -> Result<Option<Customer>, OriginError> {
        let rows = self.query("SELECT record FROM customers WHERE id = $1", &[&int(c)])?;
        rows.first().map(|r| parse("customer", r.get(0))).transpose()
    }

    /// Records an order and its first ticket atomically.
    pub fn add_order(&self, order: &Order, serial: &[u8; 16], record: &TicketRecord) -> Result<u64, OriginError> {
        let id = self.transaction("order", |tx| tx.insert_order(order, serial, record))?;
        self.count_play(&order.title);
        Ok(id)
    }

    /// An order once per idempotency key, on any origin: the key's row is
    /// written in the order's transaction; a concurrent twin that loses the
    /// race finds the winner's row on its next attempt.
    pub fn add_order_once(&self, o: KeyedOrder<'_>) -> Result<OrderOnce, OriginError> {
        let KeyedOrder { key, fingerprint, order, serial, record } = o;
        let made = self.transaction("keyed order", |tx| {
            let rows = tx.q("SELECT order_id, fingerprint FROM order_keys WHERE key = $1", &[&key])?;
            if let Some(r) = rows.first() {
                let (o, fp): (i64, &[u8]) = (r.get(0), r.get(1));
                return Ok(if fp == fingerprint { OrderOnce::Existing(id(o)) } else { OrderOnce::KeyReused(id(o)) });
            }
            let o = tx.insert_order(order, serial, record)?;
            let n = tx.x(
                "INSERT INTO order_keys (key, order_id, fingerprint) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
                &[&key, &int(o), &&fingerprint[..]],
            )?;
            if n == 0 {
                return Err(Fail::Retry);
            }
            Ok(OrderOnce::Created(o))
        })?;
        if let OrderOnce::Created(_) = made {
            self.count_play(&order.title);
        }
        Ok(made)
    }

    /// Order numbers come from the database when the order is written.
    pub fn peek_order(&self) -> u64 {
        0
    }

    /// Every order.
    pub fn orders(&self) -> Result<Vec<Order>, OriginError> {
        self.query("SELECT record FROM orders ORDER BY id", &[])?.iter().map(|r| parse("order", r.get(0))).collect()
    }

    /// An order.
    pub fn order(&self, o: u64) -> Result<Option<Order>, OriginError> {
        let rows = self.query("SELECT record FROM orders WHERE id = $1", &[&int(o)])?;
        rows.first().map(|r| parse("order", r.get(0))).transpose()
    }

    /// A ticket's record.
    pub fn ticket(&self, serial: &[u8; 16]) -> Result<Option<TicketRecord>, OriginError> {
        let rows = self.query("SELECT record FROM tickets WHERE serial = $1", &[&&serial[..]])?;
        rows.first().map(|r| parse("ticket", r.get(0))).transpose()
    }

    /// Whether a serial (a ticket's or a certificate's) is revoked.
    pub fn is_revoked(&self, serial: &[u8; 16]) -> Result<bool, OriginError> {
        Ok(!self.query("SELECT 1 FROM revoked WHERE serial = $1", &[&&serial[..]])?.is_empty())
    }

    /// Whether a customer has been revoked.
    pub fn customer_revoked(&self, c: u64) -> Result<bool, OriginError> {
        Ok(!self.query("SELECT 1 FROM revoked_scopes WHERE kind = $1 AND id = $2", &[&SCOPE_CUSTOMER, &int(c)])?.is_empty())
    }

    /// See [`crate::state::OriginState::validate`]: here one transaction
    /// holding the order's row lock; `decide` runs again after a conflict.
    pub fn validate<T>(&self, serial: &[u8; 16], mut decide: impl FnMut(TicketView) -> (T, Option<GrantWrite>)) -> Result<T, OriginError> {
        let mut granted = None;
        let out = self.transaction("validation", |tx| {
            granted = None;
            let mut view = TicketView::default();
            // The lineage's lock first: every play of the order and its
            // revocation take it; then the ticket as it is under the lock.
            let locked =
                tx.q("SELECT id FROM orders WHERE id = (SELECT order_id FROM tickets WHERE serial = $1) FOR UPDATE", &[&&serial[..]])?;
            if !locked.is_empty() {
                let rows = tx.q(
                    "SELECT t.record, EXISTS (SELECT 1 FROM revoked_scopes s
                         WHERE (s.kind = $2 AND s.id = o.id) OR (s.kind = $3 AND s.id = o.customer))
                     FROM tickets t JOIN orders o ON o.id = t.order_id WHERE t.serial = $1",
                    &[&&serial[..], &SCOPE_ORDER, &SCOPE_CUSTOMER],
                )?;
                if let Some(r) = rows.first() {
                    view.record = Some(parse("ticket", r.get(0))?);
                    view.lineage_revoked = r.get(1);
                }
            }
            if let Some(r) = view.record.as_mut() {
                if let Some(last) = &r.last_grant
                    && !tx.q("SELECT 1 FROM revoked WHERE serial = $1", &[&&last.certificate[..]])?.is_empty()
                {
                    r.last_grant = None;
                }
                if let TicketState::Replaced { by } = r.state {
                    view.replacement = tx.ticket(&by)?;
                }
            }
            let (out, write) = decide(view);
            if let Some(w) = &write {
                let (presented, rec) = &w.presented;
                let (cert, expires) = w.certificate;
                let (rec_json, entry_json) = (json(rec)?, json(&w.entry)?);
                let (order, expires, time) = (int(rec.order), int(expires), int(w.entry.time));
                let replacement = w.replacement.as_ref().map(|(s, r)| json(r).map(|j| (s.to_vec(), int(r.order), j))).transpose()?;
                let put = "INSERT INTO tickets (serial, order_id, record) VALUES ($1, $2, $3)
                           ON CONFLICT (serial) DO UPDATE SET record = excluded.record";
                let mut batch: Vec<(&str, &[&(dyn ToSql + Sync)])> = Vec::with_capacity(4);
                let presented_params: [&(dyn ToSql + Sync); 3] = [&&presented[..], &order, &rec_json];
                batch.push((put, &presented_params));
                let replacement_params: Option<[&(dyn ToSql + Sync); 3]> =
                    replacement.as_ref().map(|(s, o, j)| -> [&(dyn ToSql + Sync); 3] { [s, o, j] });
                if let Some(p) = &replacement_params {
                    batch.push((put, p));
                }
                let cert_params: [&(dyn ToSql + Sync); 4] = [&&cert[..], &&presented[..], &order, &expires];
                batch.push(("INSERT INTO certificates (serial, ticket, order_id, expires) VALUES ($1, $2, $3, $4)", &cert_params));
                let log_params: [&(dyn ToSql + Sync); 2] = [&time, &entry_json];
                batch.push(("INSERT INTO validations (time, record) VALUES ($1, $2)", &log_params));
                tx.pipeline(&batch)?;
            }
            granted = write.map(|w| w.entry.title);
            Ok(out)
        })?;
        if let Some(title) = granted {
            self.count_play(&title);
        }
        Ok(out)
    }

    /// Counts a refused play of a genuine ticket (evidence, not a decision).
    pub fn count_refusal(&self, serial: &[u8; 16], result: &str) -> Result<(), OriginError> {
        self.execute(
            "INSERT INTO refusals (serial, result, n) VALUES ($1, $2, 1) ON CONFLICT (serial, result) DO UPDATE SET n = refusals.n + 1",
            &[&&serial[..], &result],
        )
        .map(|_| ())
    }

    /// Refused plays of genuine tickets: (serial hex, result, count).
    pub fn refusals(&self) -> Result<Vec<(String, String, u64)>, OriginError> {
        Ok(self
            .query("SELECT serial, result, n FROM refusals ORDER BY serial, result", &[])?
            .iter()
            .map(|r| (hex::encode(r.get::<_, &[u8]>(0)), r.get::<_, String>(1), id(r.get(2))))
            .collect())
    }

    /// Orders plus granted plays per title.
    pub fn popularity(&self) -> Result<Vec<(String, u64)>, OriginError> {
        self.flush_popularity()?;
        Ok(self
            .query("SELECT title, CAST(SUM(n) AS BIGINT) FROM popularity GROUP BY title ORDER BY title", &[])?
            .iter()
            .map(|r| (r.get::<_, String>(0), id(r.get(1))))
            .collect())
    }

    /// The validation log, oldest first.
    pub fn validations(&self) -> Result<Vec<ValidationEntry>, OriginError> {
        self.query("SELECT record FROM validations ORDER BY time, id", &[])?.iter().map(|r| parse("validation", r.get(0))).collect()
    }
}

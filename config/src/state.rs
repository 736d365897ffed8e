//! Where the origin keeps what makes money (customers, orders, tickets,
//! validations, revocations, members) and how its keys rest.

use std::path::PathBuf;

use serde::Deserialize;

use crate::Secret;
use crate::error::fail;

/// The origin's state engine.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// RocksDB in `<data_dir>/state`: one origin process.
    #[default]
    Rocksdb,
    /// A PostgreSQL database (or an engine speaking its protocol): any
    /// number of origin processes share it.
    Postgres,
}

/// `state.*`: the origin's state engine.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// `rocksdb` (default) or `postgres`.
    pub backend: StateBackend,
    /// With `postgres`: `postgres://user:password@host:port/database` (or
    /// the key=value form). A secret: it may carry a password.
    pub url: Secret,
    /// With `postgres`: connections in the pool.
    pub pool: u32,
    /// With `postgres`: the roots (PEM) the database's certificate is
    /// checked against. Set: every connection is TLS (the URL's `sslmode`
    /// must not be `disable`). Unset: no TLS, and a URL asking for it
    /// (`sslmode=require`) is refused; keep such a database on a private network.
    pub ca: Option<PathBuf>,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self { backend: StateBackend::Rocksdb, url: Secret::default(), pool: 16, ca: None }
    }
}

/// `keys.*`: how the signing key and title keys rest.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// A file holding the key-encryption key (64 hex digits). Secrets that
    /// leave the process (to a shared database) are sealed under it; the
    /// variable `TRANZCAST_KEK` may hold it instead. Required with
    /// `state.backend = "postgres"`.
    pub kek_file: Option<PathBuf>,
}

impl StateConfig {
    /// Checks what types cannot (called by the origin's `validate`).
    pub(crate) fn validate(&self, keys: &KeysConfig) -> Result<(), (String, String)> {
        if self.backend == StateBackend::Postgres {
            let url = self.url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://") || url.contains("host=")) {
                return fail("state.url", "required with state.backend = \"postgres\": a postgres:// URL");
            }
            if keys.kek_file.is_none() && std::env::var_os("TRANZCAST_KEK").is_none() {
                return fail(
                    "keys.kek_file",
                    "required with state.backend = \"postgres\" (or TRANZCAST_KEK): keys never rest in clear in a shared database",
                );
            }
        }
        if !(1..=1024).contains(&self.pool) {
            return fail("state.pool", "must be 1 to 1024");
        }
        Ok(())
    }
}

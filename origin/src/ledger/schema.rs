//! The shared state's schema, as versioned migrations run at start.
//!
//! Only SQL that PostgreSQL, CockroachDB and YugabyteDB all accept:
//! `CREATE TABLE IF NOT EXISTS`, `BIGSERIAL`, `BYTEA`, `ON CONFLICT`,
//! `SELECT ... FOR UPDATE`, no stored procedures, no advisory locks. Every
//! statement is idempotent, so origins starting at once may each run a
//! migration: the second finds the work done.

/// Migrations in order: version, statements. Append only; never edit one
/// that has shipped.
pub(super) const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
CREATE TABLE IF NOT EXISTS customers (
    id BIGSERIAL PRIMARY KEY,
    record BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id BIGSERIAL PRIMARY KEY,
    customer BIGINT NOT NULL,
    record BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer);
CREATE TABLE IF NOT EXISTS order_keys (
    key TEXT PRIMARY KEY,
    order_id BIGINT NOT NULL,
    fingerprint BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS tickets (
    serial BYTEA PRIMARY KEY,
    order_id BIGINT NOT NULL,
    record BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
    serial BYTEA PRIMARY KEY,
    ticket BYTEA NOT NULL,
    order_id BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_by_order ON certificates (order_id);
CREATE TABLE IF NOT EXISTS validations (
    id BIGSERIAL PRIMARY KEY,
    time BIGINT NOT NULL,
    record BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked (
    serial BYTEA PRIMARY KEY,
    at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_scopes (
    kind SMALLINT NOT NULL,
    id BIGINT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS members (
    name TEXT PRIMARY KEY,
    record BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS retired_members (
    name TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS popularity (
    title TEXT NOT NULL,
    shard SMALLINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (title, shard)
);
CREATE TABLE IF NOT EXISTS refusals (
    serial BYTEA NOT NULL,
    result TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (serial, result)
);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS titles (
    title TEXT PRIMARY KEY,
    manifest BYTEA NOT NULL,
    sealed_key BYTEA NOT NULL
);
",
    ),
    (
        2,
        "
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder BYTEA NOT NULL,
    until_ms BIGINT NOT NULL
);
",
    ),
];

/// The table that records which migrations ran.
pub(super) const VERSIONS: &str = "CREATE TABLE IF NOT EXISTS tranzcast_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

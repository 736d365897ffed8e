//! Typed configuration for each Tranzcast server role: origin, node, edge
//! (and a client's peer service, an edge with role `peer`). The smart client
//! library takes its options in code (`OpenOptions`), `tranzcast play` as flags.
//!
//! Only this crate knows file formats. A config is built in three layers, each
//! over the last: a TOML file, then environment variables
//! (`TRANZCAST_<ROLE>__<KEY>__<SUBKEY>=value`, e.g.
//! `TRANZCAST_EDGE__STORE__CACHE_BYTES=1GiB`), then command-line overrides
//! (`--set store.cache_bytes=1GiB`). Unknown keys and bad values are errors
//! that name where the value came from (file, variable or flag), the key and
//! the reason; then each role's `validate()` checks what types cannot.

mod error;
mod layers;
mod limits;
mod roles;
mod state;
mod units;

pub use error::ConfigError;
pub use layers::{Layers, Source};
pub use limits::LimitsConfig;
pub use roles::{
    EdgeConfig, EdgeRole, ListenConfig, MAX_H3_ENDPOINTS, MasterBackend, MasterConfig, MirroringConfig, OriginConfig, PrecastConfig,
    RateConfig, RoleConfig, StoreConfig, TlsConfig,
};
pub use state::{KeysConfig, StateBackend, StateConfig};
pub use units::{ByteSize, Duration, Secret, TimeWindow};

/// Loads a role's config from an optional file, the process environment and overrides.
pub fn load<T: RoleConfig>(file: Option<&std::path::Path>, overrides: &[String]) -> Result<T, ConfigError> {
    Layers::new(T::ROLE).file(file)?.env(std::env::vars())?.overrides(overrides)?.build()
}

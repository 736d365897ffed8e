use thiserror::Error;

/// Why the origin could not start or complete an operation.
#[derive(Debug, Error)]
pub enum OriginError {
    /// The state database failed.
    #[error("origin state: {0}")]
    Storage(String),
    /// The blob store failed.
    #[error(transparent)]
    Store(#[from] tranzcast_store::StoreError),
    /// Listening or TLS failed.
    #[error(transparent)]
    Net(#[from] tranzcast_net::NetError),
}

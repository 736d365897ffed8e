use thiserror::Error;

/// Network setup and transport failures.
#[derive(Debug, Error)]
pub enum NetError {
    /// Binding or socket I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Certificates, keys or TLS configuration.
    #[error("tls: {0}")]
    Tls(String),
    /// An HTTP/3 or QUIC failure.
    #[error("http/3: {0}")]
    H3(String),
    /// An HTTP/1.1 or HTTP/2 client failure.
    #[error("http: {0}")]
    Http(String),
}

impl NetError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

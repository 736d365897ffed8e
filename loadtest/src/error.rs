//! The one error type of the load test crate.

/// What can go wrong in a load test.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// The scenario file is malformed or out of bounds.
    #[error("scenario: {0}")]
    Scenario(String),
    /// The cluster description (`cluster.json`) is unusable.
    #[error("cluster description: {0}")]
    ClusterFile(String),
    /// Starting, driving or stopping the local cluster failed.
    #[error("cluster: {0}")]
    Cluster(String),
    /// Preparing titles failed.
    #[error("ingest: {0}")]
    Ingest(String),
    /// A request to the cluster failed outright (not a viewer's trouble, which the report records).
    #[error("network: {0}")]
    Network(String),
    /// Files.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Drawing the report.
    #[error("report: {0}")]
    Report(String),
}

#[cfg(feature = "run")]
impl LoadtestError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

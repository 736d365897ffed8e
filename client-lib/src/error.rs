/// Why a session could not open or a playback failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The origin refused the ticket (spent, expired, revoked, forged...).
    #[error("the origin refused the ticket: {reason} ({code})")]
    Refused {
        /// The origin's error code.
        code: String,
        /// Its reason.
        reason: String,
    },
    /// Talking to the origin or a source failed.
    #[error("network: {0}")]
    Network(String),
    /// Something the origin sent does not verify (signature, title, key).
    #[error("invalid answer from the origin: {0}")]
    Invalid(String),
    /// No source could deliver a segment that verifies.
    #[error("segment {segment}: every source failed; last: {last}")]
    Unavailable {
        /// The segment.
        segment: u64,
        /// The last failure.
        last: String,
    },
    /// This client's own peer service refused what it was handed.
    #[error("local peer service: {0}")]
    Local(String),
    /// Writing the plaintext out failed.
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
}

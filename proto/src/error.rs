use thiserror::Error;

/// Why bytes could not be parsed, verified or decrypted.
///
/// Parsers never panic on hostile input: every failure is one of these.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// The input ended before the structure did.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated { what: &'static str, need: usize, have: usize },
    /// The magic bytes do not name this structure.
    #[error("bad magic for {what}")]
    BadMagic { what: &'static str },
    /// A version this build does not understand.
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion { what: &'static str, version: u8 },
    /// A field holds a value the format forbids.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// Bytes after the end of the structure.
    #[error("{extra} trailing bytes after {what}")]
    Trailing { what: &'static str, extra: usize },
    /// An Ed25519 signature did not verify.
    #[error("bad signature on {what}")]
    BadSignature { what: &'static str },
    /// The AEAD tag did not verify: wrong key, wrong header, or altered bytes.
    #[error("segment failed to decrypt (wrong key, moved or altered)")]
    Decrypt,
    /// Bytes do not hash to the address they claim.
    #[error("blake3 mismatch: expected {expected}, got {actual}")]
    HashMismatch { expected: String, actual: String },
}

impl ProtoError {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { what, reason: reason.into() }
    }

    /// `Truncated` unless `b` holds at least `need` bytes.
    pub(crate) fn need(b: &[u8], need: usize, what: &'static str) -> Result<(), Self> {
        if b.len() < need { Err(Self::Truncated { what, need, have: b.len() }) } else { Ok(()) }
    }

    /// Checks the lead every binary structure of ours starts with: four magic
    /// bytes, then a version byte (the caller has checked the length).
    pub(crate) fn check_lead(b: &[u8], magic: [u8; 4], version: u8, what: &'static str) -> Result<(), Self> {
        if b[0..4] != magic {
            return Err(Self::BadMagic { what });
        }
        if b[4] != version {
            return Err(Self::UnsupportedVersion { what, version: b[4] });
        }
        Ok(())
    }
}

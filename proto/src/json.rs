//! Bounded JSON reading for every answer of ours (hostile input: a size
//! cap first, then serde; never panics).

use crate::ProtoError;

/// Reads a JSON answer of at most `max` bytes (hostile input: bounded, never panics).
pub fn parse_bounded<T: serde::de::DeserializeOwned>(what: &'static str, max: usize, body: &[u8]) -> Result<T, ProtoError> {
    if body.len() > max {
        return Err(ProtoError::invalid(what, format!("{} bytes, at most {max}", body.len())));
    }
    serde_json::from_slice(body).map_err(|e| ProtoError::invalid(what, e.to_string()))
}

/// Reads a small control answer of the origin's (bounded to 64 KiB).
pub fn parse_small<T: serde::de::DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, ProtoError> {
    parse_bounded(what, 64 << 10, body)
}

//! The origin's list of revoked serials (`GET /v1/revocations`), which every
//! edge, node and peer pulls and checks certificates against.
//!
//! Read strictly: an edge replaces its whole set with what it reads, so a
//! list that is not entirely well formed is an error (the edge keeps its last
//! good set), never a shorter list. JSON on the wire:
//! `{"revoked": [{"serial": "<32 hex digits>", "time": <unix seconds>}, ...]}`.

use std::collections::HashSet;

use crate::ProtoError;

/// Most serials a list may hold: about 60 bytes each on the wire, so a list
/// at the cap is about 60 MiB, and what an edge keeps about 16 MiB.
pub const MAX_SERIALS: usize = 1 << 20;

/// One revoked serial (a ticket's or a certificate's) and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevokedSerial {
    /// The serial.
    pub serial: [u8; 16],
    /// Revoked at, Unix seconds.
    pub time: u64,
}

/// Writes a list in its wire form.
pub fn to_json(list: &[RevokedSerial]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + list.len() * 64);
    out.extend_from_slice(b"{\"revoked\":[");
    for (i, r) in list.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"serial\":\"");
        out.extend_from_slice(hex::encode(r.serial).as_bytes());
        out.extend_from_slice(b"\",\"time\":");
        out.extend_from_slice(r.time.to_string().as_bytes());
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    revoked: Vec<WireEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEntry {
    serial: String,
    time: u64,
}

/// Reads a list: the set of its serials. Any malformed entry, a missing
/// `revoked` array, or more than [`MAX_SERIALS`] entries is an error.
pub fn parse(bytes: &[u8]) -> Result<HashSet<[u8; 16]>, ProtoError> {
    let w: Wire = serde_json::from_slice(bytes).map_err(|e| ProtoError::invalid("revocation list", e.to_string()))?;
    if w.revoked.len() > MAX_SERIALS {
        return Err(ProtoError::invalid("revocation list", format!("{} serials, more than {MAX_SERIALS}", w.revoked.len())));
    }
    let mut set = HashSet::with_capacity(w.revoked.len());
    for (i, e) in w.revoked.iter().enumerate() {
        let mut serial = [0u8; 16];
        if e.serial.len() != 32 || hex::decode_to_slice(&e.serial, &mut serial).is_err() {
            return Err(ProtoError::invalid("revocation list", format!("entry {i}: serial is not 32 hex digits")));
        }
        let _ = e.time;
        set.insert(serial);
    }
    Ok(set)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let list = [RevokedSerial { serial: [1; 16], time: 5 }, RevokedSerial { serial: [0xab; 16], time: u64::MAX }];
        let set = parse(&to_json(&list)).unwrap();
        assert_eq!(set, HashSet::from([[1; 16], [0xab; 16]]));
        assert!(parse(&to_json(&[])).unwrap().is_empty());
    }

    #[test]
    fn anything_not_entirely_a_list_is_refused_not_read_as_shorter() {
        let good = format!("{{\"serial\":\"{}\",\"time\":1}}", hex::encode([2u8; 16]));
        for bad in [
            String::new(),
            "null".into(),
            "{}".into(),
            "{\"revoked\":null}".into(),
            "{\"error\":\"internal\"}".into(),
            "<html>500</html>".into(),
            format!("{{\"revoked\":[{good},{{\"serial\":\"zz\",\"time\":1}}]}}"),
            format!("{{\"revoked\":[{good},{{\"serial\":\"{}\",\"time\":1}}]}}", "a".repeat(31)),
            format!("{{\"revoked\":[{good},{{\"serial\":\"{}\",\"time\":1}}]}}", "é".repeat(16)),
            format!("{{\"revoked\":[{good},{{\"serial\":\"{}\"}}]}}", "a".repeat(32)),
            format!("{{\"revoked\":[{good},{{\"serial\":\"{}\",\"time\":-1}}]}}", "a".repeat(32)),
            format!("{{\"revoked\":[{good}],\"more\":1}}"),
            format!("{{\"revoked\":[{good}]"),
            format!("{{\"revoked\":[{good}]}}trailing"),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?} was read");
        }
        let ok = format!("{{\"revoked\":[{good}]}}");
        assert_eq!(parse(ok.as_bytes()).unwrap().len(), 1);
    }
}

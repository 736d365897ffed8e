//! One verified fetch of a blob, or of the rest of one, from one source:
//! the outboard first (checked against the address), the body asked by
//! range from the first byte not yet in hand, each 16 KiB group verified
//! as it arrives, and every way it can go wrong sorted into what to do about
//! the source ([`Miss`]). Pure: the edge's miss path (`edge::fetch`) and the
//! smart client's scheduler (`client::schedule`) do the I/O around it.

use crate::BlobAddress;
use crate::outboard::{GroupVerifier, Outboard};

/// Why a fetch from one source did not deliver; every kind means "try
/// another source", and says whether this one is to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Miss {
    /// It does not hold the blob (404): not a fault.
    #[error("does not hold it")]
    NotThere,
    /// It could not deliver (a refusal, an error status, a transport error,
    /// a stall, a body cut short): retryable elsewhere; the source is
    /// passed over for a while.
    #[error("{0}")]
    Unreachable(String),
    /// It sent what the blob's address refutes (bytes, an outboard), or a
    /// body other than the one asked for: the source is not to be trusted.
    #[error("{0}")]
    Lied(String),
}

impl Miss {
    /// Whether the source is demoted for it (every miss but [`Miss::NotThere`]).
    pub fn demotes(&self) -> bool {
        !matches!(self, Miss::NotThere)
    }
}

/// The `Range` header asking for bytes `from` to `to` (exclusive; None: to
/// the end), or None when that is the whole blob.
pub fn range_header(from: u64, to: Option<u64>) -> Option<String> {
    match to {
        Some(to) if to > from => Some(format!("bytes={from}-{}", to - 1)),
        Some(_) => Some(format!("bytes={from}-{from}")),
        None if from > 0 => Some(format!("bytes={from}-")),
        None => None,
    }
}

/// The answer to `GET /v1/outboards/<addr>`: its status and body, checked
/// against the address. The verifier starts at byte 0.
pub fn outboard(addr: &BlobAddress, status: u16, body: &[u8]) -> Result<GroupVerifier, Miss> {
    match status {
        404 => return Err(Miss::NotThere),
        200 => {}
        s => return Err(Miss::Unreachable(format!("outboard: status {s}"))),
    }
    let ob = Outboard::decode(body).map_err(|e| Miss::Lied(format!("bad outboard: {e}")))?;
    GroupVerifier::new(*addr, ob).map_err(|e| Miss::Lied(format!("bad outboard: {e}")))
}

/// The status of a response to a request for bytes from `from` (`ranged`:
/// with a `Range` header): 206 for a range, 200 for the whole blob, or 200
/// for a range from byte 0 (the whole blob is all checked; true: the body is
/// the whole blob).
pub fn body_status(status: u16, from: u64, ranged: bool) -> Result<bool, Miss> {
    let want = if ranged { 206 } else { 200 };
    match status {
        404 => Err(Miss::NotThere),
        206 if ranged => Ok(false),
        200 if from == 0 => Ok(true),
        200 | 206 => Err(Miss::Lied(format!("status {status} (wanted {want})"))),
        s => Err(Miss::Unreachable(format!("status {s} (wanted {want})"))),
    }
}

/// A body being fetched from `from` (a group boundary) to `to`, verified
/// group by group; verified bytes are handed on in order, nothing else.
#[derive(Debug, Clone)]
pub struct BodyFetch {
    verifier: GroupVerifier,
    from: u64,
    to: Option<u64>,
}

impl BodyFetch {
    /// Bytes `from` (a group boundary, or the end) up to `to` (exclusive;
    /// None: the end) of the blob `verifier` (at byte 0) checks.
    pub fn new(verifier: GroupVerifier, from: u64, to: Option<u64>) -> Result<Self, Miss> {
        let mut verifier = verifier;
        verifier.skip_to(from).map_err(|e| Miss::Lied(e.to_string()))?;
        let to = to.filter(|t| *t < verifier.len());
        Ok(Self { verifier, from, to })
    }

    /// The `Range` header to ask with (None: ask for the whole blob).
    pub fn range(&self) -> Option<String> {
        range_header(self.from, self.to)
    }

    /// The response's status (see [`body_status`]).
    pub fn answered(&mut self, status: u16) -> Result<(), Miss> {
        if body_status(status, self.from, self.range().is_some())? {
            self.to = None;
        }
        Ok(())
    }

    /// After a bounded range came whole: the rest of the blob, from the
    /// first byte not verified (what to ask for next).
    pub fn rest(&mut self) -> u64 {
        self.verifier.abandon_pending();
        self.from = self.verifier.verified();
        self.to = None;
        self.from
    }

    /// Body bytes: each group verified is handed to `on_group(offset, bytes)`.
    pub fn push(&mut self, chunk: &[u8], on_group: impl FnMut(u64, &[u8])) -> Result<(), Miss> {
        self.verifier.push(chunk, on_group).map_err(|e| Miss::Lied(format!("bad bytes after byte {}: {e}", self.verifier.verified())))
    }

    /// The body ended: Ok when everything asked for was verified.
    pub fn finish(&mut self) -> Result<(), Miss> {
        if self.is_done() {
            return Ok(());
        }
        self.verifier.finish().map_err(|e| Miss::Unreachable(format!("the body ended short: {e}")))
    }

    /// Whether every byte asked for is verified.
    pub fn is_done(&self) -> bool {
        self.verifier.is_complete() || self.to.is_some_and(|t| self.verifier.verified() >= t)
    }

    /// Bytes of the blob verified so far (from its start: where a resumed fetch asks from).
    pub fn verified(&self) -> u64 {
        self.verifier.verified()
    }

    /// The blob's length.
    pub fn len(&self) -> u64 {
        self.verifier.len()
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.verifier.is_empty()
    }

    /// Where this fetch started.
    pub fn from(&self) -> u64 {
        self.from
    }

    /// Forgets bytes received past the last verified group (the fetch is left).
    pub fn abandon(&mut self) {
        self.verifier.abandon_pending();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::outboard::GROUP_LEN;

    fn blob(len: usize) -> (Vec<u8>, BlobAddress, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let (addr, ob) = Outboard::compute(&data);
        (data, addr, ob.encode())
    }

    #[test]
    fn a_resumed_range_is_verified_and_only_its_groups_are_handed_on() {
        let (data, addr, ob) = blob(5 * GROUP_LEN as usize + 100);
        let v = outboard(&addr, 200, &ob).unwrap();
        let g = GROUP_LEN as usize;
        let mut f = BodyFetch::new(v, 2 * GROUP_LEN, None).unwrap();
        assert_eq!(f.range().as_deref(), Some(format!("bytes={}-", 2 * g).as_str()));
        f.answered(206).unwrap();
        let mut got = Vec::new();
        for c in data[2 * g..].chunks(5000) {
            f.push(c, |off, b| {
                assert_eq!(off as usize, 2 * g + got.len());
                got.extend_from_slice(b);
            })
            .unwrap();
        }
        f.finish().unwrap();
        assert!(got == data[2 * g..]);
    }

    #[test]
    fn a_bounded_range_is_done_at_its_end() {
        let (data, addr, ob) = blob(4 * GROUP_LEN as usize);
        let mut f = BodyFetch::new(outboard(&addr, 200, &ob).unwrap(), 0, Some(GROUP_LEN)).unwrap();
        assert_eq!(f.range().as_deref(), Some("bytes=0-16383"));
        f.answered(206).unwrap();
        f.push(&data[..GROUP_LEN as usize], |_, _| {}).unwrap();
        assert!(f.is_done());
        f.finish().unwrap();
        // A whole blob for a range from 0 is fine: all of it is checked.
        let mut f = BodyFetch::new(outboard(&addr, 200, &ob).unwrap(), 0, Some(GROUP_LEN)).unwrap();
        f.answered(200).unwrap();
        assert!(!f.is_done());
    }

    #[test]
    fn every_way_to_fail_says_what_to_do_about_the_source() {
        let (data, addr, ob) = blob(3 * GROUP_LEN as usize);
        assert_eq!(outboard(&addr, 404, &[]).unwrap_err(), Miss::NotThere);
        assert!(matches!(outboard(&addr, 503, &[]).unwrap_err(), Miss::Unreachable(_)));
        let mut bad = ob.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(outboard(&addr, 200, &bad).unwrap_err(), Miss::Lied(_)));
        assert!(matches!(outboard(&addr, 200, &ob[..3]).unwrap_err(), Miss::Lied(_)));
        let v = outboard(&addr, 200, &ob).unwrap();
        // Not a group boundary: no resumption there.
        assert!(matches!(BodyFetch::new(v.clone(), 100, None).unwrap_err(), Miss::Lied(_)));
        // The whole blob for a resumed range, or a range for the whole blob: not what was asked.
        assert!(matches!(BodyFetch::new(v.clone(), GROUP_LEN, None).unwrap().answered(200).unwrap_err(), Miss::Lied(_)));
        assert!(matches!(BodyFetch::new(v.clone(), 0, None).unwrap().answered(206).unwrap_err(), Miss::Lied(_)));
        assert!(matches!(BodyFetch::new(v.clone(), 0, None).unwrap().answered(500).unwrap_err(), Miss::Unreachable(_)));
        assert_eq!(BodyFetch::new(v.clone(), 0, None).unwrap().answered(404).unwrap_err(), Miss::NotThere);
        // A flipped byte is caught within its group, and nothing of that group is handed on.
        let mut f = BodyFetch::new(v.clone(), 0, None).unwrap();
        f.answered(200).unwrap();
        let mut lie = data.clone();
        lie[GROUP_LEN as usize + 9] ^= 1;
        let mut handed = 0;
        let e = f.push(&lie, |_, b| handed += b.len()).unwrap_err();
        assert!(matches!(e, Miss::Lied(_)) && e.demotes());
        assert_eq!(handed, GROUP_LEN as usize);
        // A body cut short: retryable from where it stopped.
        let mut f = BodyFetch::new(v, 0, None).unwrap();
        f.answered(200).unwrap();
        f.push(&data[..GROUP_LEN as usize + 5], |_, _| {}).unwrap();
        assert!(matches!(f.finish().unwrap_err(), Miss::Unreachable(_)));
        assert_eq!(f.verified(), GROUP_LEN);
        assert!(!Miss::NotThere.demotes());
    }
}

//! Verified range reads: the chaining values of a blob's 16 KiB groups.
//!
//! A blob's address is its plain blake3 hash. BLAKE3 is a Merkle tree over
//! 1 KiB chunks, so the hash of any 16 KiB-aligned group can be computed on
//! its own (at its offset) and the groups' chaining values merged back up to
//! the root. The outboard of a blob is the list of those chaining values: 32
//! bytes per 16 KiB (0.2 % of the blob, 16 KiB for an 8 MiB segment).
//!
//! With it a reader checks (1) that the outboard merges to the address (a few
//! hundred parent compressions at most) and then (2) each group as it arrives,
//! so a lying peer or parent is caught within 16 KiB, and a range of a blob
//! is verified by hashing only the groups it touches. Blobs of one group or
//! less have an empty outboard: they are verified whole.

use blake3::hazmat::{ChainingValue, HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root};

use crate::{BlobAddress, ProtoError, read_u64};

/// Bytes per verified group.
pub const GROUP_LEN: u64 = 16 * 1024;

/// The largest encoded outboard a server sends: that of a 256 MiB blob
/// (segments are at most 64 MiB, a manifest of the most segments 128 MiB).
/// What a reader of someone else's outboard caps the answer at.
pub const MAX_ENCODED: usize = 8 + 32 * ((256 << 20) / GROUP_LEN as usize);

/// The group chaining values of one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outboard {
    /// The blob's length in bytes.
    pub len: u64,
    /// One chaining value per 16 KiB group; empty when `len <= GROUP_LEN`.
    pub cvs: Vec<ChainingValue>,
}

/// Number of groups a blob of `len` bytes has (at least one).
pub fn group_count(len: u64) -> u64 {
    len.div_ceil(GROUP_LEN).max(1)
}

/// Chaining value of group `index` (its bytes in `group`), as a non-root node.
pub fn group_cv(index: u64, group: &[u8]) -> ChainingValue {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(index * GROUP_LEN);
    h.update(group);
    h.finalize_non_root()
}

impl Outboard {
    /// Computes the address and outboard of `data` in one pass over it.
    pub fn compute(data: &[u8]) -> (BlobAddress, Outboard) {
        let len = data.len() as u64;
        if len <= GROUP_LEN {
            return (BlobAddress::of(data), Outboard { len, cvs: Vec::new() });
        }
        let cvs: Vec<ChainingValue> = data.chunks(GROUP_LEN as usize).enumerate().map(|(i, g)| group_cv(i as u64, g)).collect();
        let ob = Outboard { len, cvs };
        let root = ob.root().unwrap_or_else(|_| BlobAddress::of(data));
        (root, ob)
    }

    /// Merges the chaining values up to the root hash.
    pub fn root(&self) -> Result<BlobAddress, ProtoError> {
        if self.len <= GROUP_LEN {
            return Err(ProtoError::invalid("outboard", "a single-group blob has no outboard root"));
        }
        if self.cvs.len() as u64 != group_count(self.len) {
            return Err(ProtoError::invalid(
                "outboard",
                format!("{} chaining values for {} bytes, need {}", self.cvs.len(), self.len, group_count(self.len)),
            ));
        }
        let (l, r) = self.children(0, self.len);
        Ok(BlobAddress(*merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()))
    }

    fn children(&self, offset: u64, len: u64) -> (ChainingValue, ChainingValue) {
        let left = left_subtree_len(len);
        (self.subtree(offset, left), self.subtree(offset + left, len - left))
    }

    fn subtree(&self, offset: u64, len: u64) -> ChainingValue {
        if len <= GROUP_LEN {
            return self.cvs[(offset / GROUP_LEN) as usize];
        }
        let (l, r) = self.children(offset, len);
        merge_subtrees_non_root(&l, &r, Mode::Hash)
    }

    /// Checks that this outboard belongs to `address`.
    pub fn verify_root(&self, address: &BlobAddress) -> Result<(), ProtoError> {
        let root = self.root()?;
        if root == *address { Ok(()) } else { Err(ProtoError::HashMismatch { expected: address.to_hex(), actual: root.to_hex() }) }
    }

    /// Checks the bytes of group `index` against its chaining value. The
    /// outboard must already have been checked with [`Outboard::verify_root`].
    pub fn verify_group(&self, index: u64, group: &[u8]) -> Result<(), ProtoError> {
        let (start, end) = self.group_bounds(index)?;
        if group.len() as u64 != end - start {
            return Err(ProtoError::invalid("group", format!("{} bytes, need {}", group.len(), end - start)));
        }
        let want = self.cvs[index as usize];
        let got = group_cv(index, group);
        if want == got { Ok(()) } else { Err(ProtoError::HashMismatch { expected: hex::encode(want), actual: hex::encode(got) }) }
    }

    /// Byte bounds `[start, end)` of group `index`.
    pub fn group_bounds(&self, index: u64) -> Result<(u64, u64), ProtoError> {
        if index >= group_count(self.len) || self.cvs.is_empty() {
            return Err(ProtoError::invalid("group index", format!("{index} of {}", group_count(self.len))));
        }
        let start = index * GROUP_LEN;
        Ok((start, (start + GROUP_LEN).min(self.len)))
    }

    /// Encoded form: length (u64, big-endian) then the chaining values.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.cvs.len());
        out.extend_from_slice(&self.len.to_be_bytes());
        for cv in &self.cvs {
            out.extend_from_slice(cv);
        }
        out
    }

    /// Parses the encoded form, checking the count matches the length.
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        if b.len() < 8 {
            return Err(ProtoError::Truncated { what: "outboard", need: 8, have: b.len() });
        }
        let len = read_u64(b, 0);
        let want = if len <= GROUP_LEN { 0 } else { group_count(len) };
        let body = &b[8..];
        if body.len() as u64 != want.saturating_mul(32) {
            return Err(ProtoError::invalid("outboard", format!("{} bytes of chaining values for a {len}-byte blob", body.len())));
        }
        let cvs = body
            .chunks_exact(32)
            .map(|c| {
                let mut cv = [0u8; 32];
                cv.copy_from_slice(c);
                cv
            })
            .collect();
        Ok(Self { len, cvs })
    }
}

/// Verifies a blob as its bytes stream in, 16 KiB group by group, from the
/// start or from any group boundary (a fetch resumed at another source).
/// Only verified bytes are passed on; a lie is caught within one group.
#[derive(Debug, Clone)]
pub struct GroupVerifier {
    address: BlobAddress,
    outboard: Outboard,
    /// The next group to verify: everything before it has been passed on.
    next_group: u64,
    /// Bytes of `next_group` (and beyond) received, not yet verified.
    pending: Vec<u8>,
}

impl GroupVerifier {
    /// Starts at byte 0. The outboard is checked against the address first
    /// (a blob of one group has none: its group is checked against the address).
    pub fn new(address: BlobAddress, outboard: Outboard) -> Result<Self, ProtoError> {
        if outboard.len > GROUP_LEN {
            outboard.verify_root(&address)?;
        } else if !outboard.cvs.is_empty() {
            return Err(ProtoError::invalid("outboard", "chaining values for a single-group blob"));
        }
        Ok(Self { address, outboard, next_group: 0, pending: Vec::new() })
    }

    /// The outboard it checks with (itself checked against the address).
    pub fn outboard(&self) -> &Outboard {
        &self.outboard
    }

    /// The blob's length (checked with the outboard; for a single-group blob
    /// it is checked when the group is).
    pub fn len(&self) -> u64 {
        self.outboard.len
    }

    /// Whether the blob is empty.
    pub fn is_empty(&self) -> bool {
        self.outboard.len == 0
    }

    /// Bytes verified and passed on so far; a resumed fetch asks from here.
    pub fn verified(&self) -> u64 {
        (self.next_group * GROUP_LEN).min(self.outboard.len)
    }

    /// Whether every byte has been verified.
    pub fn is_complete(&self) -> bool {
        self.next_group >= group_count(self.outboard.len)
    }

    /// Starts at `offset` instead (bytes before it are in hand already): a
    /// group boundary, or the end.
    pub fn skip_to(&mut self, offset: u64) -> Result<(), ProtoError> {
        if offset > self.outboard.len || (!offset.is_multiple_of(GROUP_LEN) && offset != self.outboard.len) {
            return Err(ProtoError::invalid("resume offset", format!("{offset} is not a group boundary of {} bytes", self.outboard.len)));
        }
        self.next_group = if offset == self.outboard.len && offset > 0 { group_count(offset) } else { offset / GROUP_LEN };
        self.pending.clear();
        Ok(())
    }

    /// Forgets bytes received but not verified: the stream is abandoned and
    /// resumes at [`GroupVerifier::verified`], from another source.
    pub fn abandon_pending(&mut self) {
        self.pending.clear();
    }

    /// Takes the next bytes of the stream; `on_group(offset, bytes)` is called
    /// for each group verified, in order. Bytes beyond the blob's end, or a
    /// group that does not match, are an error (nothing of it passed on).
    pub fn push(&mut self, mut data: &[u8], mut on_group: impl FnMut(u64, &[u8])) -> Result<(), ProtoError> {
        let count = group_count(self.outboard.len);
        loop {
            if self.next_group >= count {
                if data.is_empty() && self.pending.is_empty() {
                    return Ok(());
                }
                return Err(ProtoError::invalid("stream", format!("bytes beyond the blob's {} bytes", self.outboard.len)));
            }
            let start = self.next_group * GROUP_LEN;
            let glen = ((self.outboard.len - start).min(GROUP_LEN)) as usize;
            // Whole groups straight from the input, without copying.
            let group: &[u8] = if self.pending.is_empty() && data.len() >= glen {
                let (g, rest) = data.split_at(glen);
                data = rest;
                g
            } else {
                let take = (glen - self.pending.len()).min(data.len());
                self.pending.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.pending.len() < glen {
                    return Ok(());
                }
                &self.pending
            };
            if self.outboard.len <= GROUP_LEN {
                self.address.verify(group)?;
            } else {
                self.outboard.verify_group(self.next_group, group)?;
            }
            on_group(start, group);
            self.next_group += 1;
            self.pending.clear();
        }
    }

    /// The stream ended: Ok only if every byte was verified.
    pub fn finish(&mut self) -> Result<(), ProtoError> {
        // An empty blob has one empty group, verified here.
        self.push(&[], |_, _| {})?;
        if self.is_complete() {
            Ok(())
        } else {
            Err(ProtoError::Truncated {
                what: "blob",
                need: self.outboard.len as usize,
                have: (self.verified() as usize) + self.pending.len(),
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u64).wrapping_mul(2654435761) as u8).collect()
    }

    #[test]
    fn root_equals_blake3_for_awkward_lengths() {
        let g = GROUP_LEN as usize;
        for len in [0, 1, 1024, g - 1, g, g + 1, 2 * g, 2 * g + 1, 3 * g, 5 * g - 7, 8 * g, 9 * g + 1000, 33 * g + 5] {
            let d = data(len);
            let (addr, ob) = Outboard::compute(&d);
            assert_eq!(addr, BlobAddress::of(&d), "len {len}");
            if len as u64 > GROUP_LEN {
                ob.verify_root(&addr).unwrap();
                for i in 0..group_count(len as u64) {
                    let (s, e) = ob.group_bounds(i).unwrap();
                    ob.verify_group(i, &d[s as usize..e as usize]).unwrap();
                }
                assert_eq!(Outboard::decode(&ob.encode()).unwrap(), ob);
            } else {
                assert!(ob.cvs.is_empty());
            }
        }
    }

    #[test]
    fn lies_are_caught() {
        let d = data(5 * GROUP_LEN as usize + 3);
        let (addr, ob) = Outboard::compute(&d);
        let mut bad = d.clone();
        bad[3 * GROUP_LEN as usize + 9] ^= 4;
        assert!(ob.verify_group(3, &bad[3 * GROUP_LEN as usize..4 * GROUP_LEN as usize]).is_err());
        assert!(ob.verify_group(2, &bad[2 * GROUP_LEN as usize..3 * GROUP_LEN as usize]).is_ok());
        let mut forged = ob.clone();
        forged.cvs[1][0] ^= 1;
        assert!(forged.verify_root(&addr).is_err());
        assert!(ob.verify_root(&BlobAddress::of(b"other")).is_err());
        assert!(ob.verify_group(99, &[]).is_err());
    }

    #[test]
    fn hostile_encodings_rejected() {
        assert!(Outboard::decode(&[]).is_err());
        assert!(Outboard::decode(&[0; 7]).is_err());
        let mut b = (GROUP_LEN * 3).to_be_bytes().to_vec();
        b.extend([0u8; 64]);
        assert!(Outboard::decode(&b).is_err(), "too few cvs");
        let mut b = u64::MAX.to_be_bytes().to_vec();
        b.extend([0u8; 32]);
        assert!(Outboard::decode(&b).is_err(), "huge length");
        assert!(Outboard::decode(&10u64.to_be_bytes()).is_ok());
    }

    #[test]
    fn streaming_verifier_passes_only_verified_groups_and_resumes() {
        let g = GROUP_LEN as usize;
        for len in [0usize, 1, g, g + 1, 3 * g + 17] {
            let d = data(len);
            let (addr, ob) = Outboard::compute(&d);
            // Odd chunk sizes, straddling group boundaries.
            let mut v = GroupVerifier::new(addr, ob.clone()).unwrap();
            let mut out = Vec::new();
            for c in d.chunks(5000) {
                v.push(c, |off, grp| {
                    assert_eq!(off as usize, out.len());
                    out.extend_from_slice(grp)
                })
                .unwrap();
            }
            v.finish().unwrap();
            assert_eq!(out, d, "len {len}");
            assert!(v.is_complete());
            // Abandoned half-way through a group: resumes from the last whole group.
            if len > 2 * g {
                let mut v = GroupVerifier::new(addr, ob.clone()).unwrap();
                let mut out = Vec::new();
                v.push(&d[..g + 100], |_, grp| out.extend_from_slice(grp)).unwrap();
                assert_eq!(v.verified(), GROUP_LEN);
                v.abandon_pending();
                v.push(&d[g..], |_, grp| out.extend_from_slice(grp)).unwrap();
                v.finish().unwrap();
                assert_eq!(out, d);
            }
        }
    }

    #[test]
    fn streaming_verifier_catches_lies_truncation_and_excess() {
        let g = GROUP_LEN as usize;
        let d = data(4 * g + 3);
        let (addr, ob) = Outboard::compute(&d);
        let mut bad = d.clone();
        bad[2 * g + 5] ^= 1;
        let mut v = GroupVerifier::new(addr, ob.clone()).unwrap();
        let mut passed = 0;
        assert!(v.push(&bad, |_, grp| passed += grp.len()).is_err());
        assert_eq!(passed, 2 * g, "the groups before the lie pass, the lie does not");
        assert_eq!(v.verified(), 2 * GROUP_LEN);
        let mut v = GroupVerifier::new(addr, ob.clone()).unwrap();
        v.push(&d[..d.len() - 1], |_, _| {}).unwrap();
        assert!(v.finish().is_err(), "truncated");
        let mut v = GroupVerifier::new(addr, ob.clone()).unwrap();
        let mut more = d.clone();
        more.push(0);
        assert!(v.push(&more, |_, _| {}).is_err(), "excess");
        // An outboard for other bytes, or a small blob with the wrong bytes.
        assert!(GroupVerifier::new(BlobAddress::of(b"x"), ob).is_err());
        let small = data(100);
        let (a, o) = Outboard::compute(&small);
        let mut v = GroupVerifier::new(a, o).unwrap();
        assert!(v.push(&data(101)[1..], |_, _| {}).is_err());
        let forged = Outboard { len: 10, cvs: vec![[0; 32]] };
        assert!(GroupVerifier::new(a, forged).is_err());
    }
}

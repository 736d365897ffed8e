use std::fmt;
use std::str::FromStr;

use crate::ProtoError;

/// The address of a stored blob: the blake3 hash of every one of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobAddress(pub [u8; 32]);

impl BlobAddress {
    /// The address of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        // blake3's encoder works on a fixed buffer (hex::encode collects
        // chars one by one; this is on every request's path).
        blake3::Hash::from_bytes(self.0).to_hex().as_str().to_owned()
    }

    /// The strong entity tag of the blob at this address: its hex, quoted
    /// (built in one allocation: it is on every blob request's path).
    pub fn etag(&self) -> String {
        let mut s = String::with_capacity(66);
        s.push('"');
        s.push_str(blake3::Hash::from_bytes(self.0).to_hex().as_str());
        s.push('"');
        s
    }

    /// Checks that `bytes` hash to this address.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), ProtoError> {
        let actual = Self::of(bytes);
        if actual == *self { Ok(()) } else { Err(ProtoError::HashMismatch { expected: self.to_hex(), actual: actual.to_hex() }) }
    }

    /// Parses from a 32-byte slice.
    pub fn from_slice(b: &[u8]) -> Result<Self, ProtoError> {
        let arr: [u8; 32] = b.try_into().map_err(|_| ProtoError::invalid("blob address", format!("{} bytes, need 32", b.len())))?;
        Ok(Self(arr))
    }
}

impl From<blake3::Hash> for BlobAddress {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl fmt::Display for BlobAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobAddress({})", &self.to_hex()[..16])
    }
}

impl FromStr for BlobAddress {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(ProtoError::invalid("blob address", format!("{} hex digits, need 64", s.len())));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| ProtoError::invalid("blob address", e.to_string()))?;
        Ok(Self(out))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_hostile_strings() {
        let a = BlobAddress::of(b"hello");
        assert_eq!(a.to_hex().parse::<BlobAddress>().unwrap(), a);
        assert_eq!(a.to_hex(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(a.etag(), format!("\"{}\"", a.to_hex()));
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(63), &"0".repeat(65), "é"] {
            assert!(bad.parse::<BlobAddress>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn verify_detects_one_flipped_bit() {
        let mut data = vec![7u8; 5000];
        let a = BlobAddress::of(&data);
        a.verify(&data).unwrap();
        data[4321] ^= 0x10;
        assert!(matches!(a.verify(&data), Err(ProtoError::HashMismatch { .. })));
    }
}

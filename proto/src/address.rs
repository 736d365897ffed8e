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

    /// The strong entity tag, as [`BlobAddress::etag`], written into `buf`
    /// (no allocation: every blob request makes one).
    pub fn etag_in<'a>(&self, buf: &'a mut [u8; 66]) -> &'a str {
        buf[0] = b'"';
        buf[1..65].copy_from_slice(blake3::Hash::from_bytes(self.0).to_hex().as_bytes());
        buf[65] = b'"';
        // Quotes and hex digits: always UTF-8.
        std::str::from_utf8(buf).unwrap_or("")
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
        // Every blob request parses one: a table lookup per digit and one
        // check at the end, where a digit-by-digit match cost 0.2 us.
        let mut bad = 0u8;
        for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let (hi, lo) = (HEX_VALUE[usize::from(pair[0])], HEX_VALUE[usize::from(pair[1])]);
            bad |= hi | lo;
            *o = (hi << 4) | lo;
        }
        if bad & NOT_HEX != 0 {
            let at = s.bytes().position(|c| HEX_VALUE[usize::from(c)] == NOT_HEX).unwrap_or(0);
            return Err(ProtoError::invalid("blob address", format!("character {at} is not a hex digit")));
        }
        Ok(Self(out))
    }
}

/// Marks a byte that is not a hex digit in [`HEX_VALUE`] (no digit has this bit).
const NOT_HEX: u8 = 0x80;

/// The value of each byte as a hex digit (either case), or [`NOT_HEX`].
const HEX_VALUE: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

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
        assert_eq!(a.etag_in(&mut [0; 66]), a.etag());
        assert_eq!(a.to_hex().to_uppercase().parse::<BlobAddress>().unwrap(), a, "either case");
        for bad in ["", "00", &"g".repeat(64), &"0".repeat(63), &"0".repeat(65), "é"] {
            assert!(bad.parse::<BlobAddress>().is_err(), "{bad:?} parsed");
        }
        // Each byte value in each place: a digit parses to the hex crate's
        // value, anything else is refused, naming where it is.
        let good = a.to_hex();
        for at in [0, 1, 31, 62, 63] {
            for c in 0..=255u8 {
                let mut b = good.clone().into_bytes();
                b[at] = c;
                let Ok(text) = String::from_utf8(b.clone()) else { continue };
                match (text.parse::<BlobAddress>(), hex::decode(&b)) {
                    (Ok(p), Ok(want)) => assert_eq!(&p.0[..], &want[..], "{text}"),
                    (Err(e), Err(_)) => assert!(e.to_string().contains(&format!("character {at} ")), "{e}"),
                    (got, want) => panic!("{text:?}: {got:?} against the hex crate's {want:?}"),
                }
            }
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

use std::fmt;
use std::str::FromStr;

use crate::ProtoError;

/// Width of a title id on the wire: fixed, so tickets and frame headers stay fixed-size.
pub const TITLE_ID_LEN: usize = 32;

/// A title's id: 1 to 32 bytes of `[a-z0-9._-]`, starting with a letter or digit.
///
/// Lower-case only so two ids never differ by case alone; on the wire it is
/// padded with zero bytes to [`TITLE_ID_LEN`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TitleId(String);

impl TitleId {
    /// Validates and wraps `s`.
    pub fn new(s: &str) -> Result<Self, ProtoError> {
        let reason = if s.is_empty() {
            Some("empty".to_string())
        } else if s.len() > TITLE_ID_LEN {
            Some(format!("{} bytes, at most {TITLE_ID_LEN}", s.len()))
        } else if !s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c)) {
            Some("only a-z, 0-9, '.', '_' and '-' are allowed".to_string())
        } else if !s.as_bytes()[0].is_ascii_alphanumeric() {
            Some("must start with a letter or digit".to_string())
        } else {
            None
        };
        match reason {
            Some(r) => Err(ProtoError::invalid("title id", format!("{s:?}: {r}"))),
            None => Ok(Self(s.to_string())),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fixed-width wire form.
    pub fn to_wire(&self) -> [u8; TITLE_ID_LEN] {
        let mut out = [0u8; TITLE_ID_LEN];
        out[..self.0.len()].copy_from_slice(self.0.as_bytes());
        out
    }

    /// Parses the fixed-width wire form: the id, then only zero bytes.
    pub fn from_wire(b: &[u8; TITLE_ID_LEN]) -> Result<Self, ProtoError> {
        let end = b.iter().position(|&c| c == 0).unwrap_or(TITLE_ID_LEN);
        if b[end..].iter().any(|&c| c != 0) {
            return Err(ProtoError::invalid("title id", "non-zero byte after the padding starts"));
        }
        let s = std::str::from_utf8(&b[..end]).map_err(|_| ProtoError::invalid("title id", "not UTF-8"))?;
        Self::new(s)
    }
}

impl fmt::Display for TitleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TitleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TitleId({})", self.0)
    }
}

impl FromStr for TitleId {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_slugs_and_round_trips() {
        for ok in ["a", "big-buck-bunny", "t1.v2_x", &"z".repeat(32)] {
            let t = TitleId::new(ok).unwrap();
            assert_eq!(TitleId::from_wire(&t.to_wire()).unwrap(), t);
        }
    }

    #[test]
    fn rejects_hostile_ids() {
        for bad in ["", "A", "-x", ".x", "a b", "a/b", "..", &"z".repeat(33), "é", "a\0"] {
            assert!(TitleId::new(bad).is_err(), "{bad:?} accepted");
        }
        let mut w = TitleId::new("ab").unwrap().to_wire();
        w[5] = b'x';
        assert!(TitleId::from_wire(&w).is_err(), "byte after padding accepted");
        assert!(TitleId::from_wire(&[0u8; 32]).is_err(), "empty accepted");
    }
}

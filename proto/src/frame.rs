//! The segment frame: the patent's Fig. 11 packet header brought up to date.
//!
//! ```text
//! offset size  field
//!  0      4    magic "TZSF"
//!  4      1    version (1)
//!  5      1    kind (1 media, 2 init)
//!  6      2    extensions length E, big-endian (at most 4096)
//!  8     32    data owner: title id, zero padded
//! 40      8    sequence number, big-endian
//! 48      8    payload length P: ciphertext including its 16-byte tag
//! 56     12    AES-256-GCM-SIV nonce
//! 68      4    reserved, zero
//! 72      E    header extensions, TLV: type u16, length u16, value
//! 72+E    P    payload: ciphertext || tag
//! ```
//!
//! The whole header (fixed part and extensions) is the AEAD's associated data,
//! so a frame cannot be moved to another title, kind or position: its key and
//! its tag both depend on them. Parsing checks structure only; decryption is
//! in [`crate::keys`].

use crate::title::TITLE_ID_LEN;
use crate::{ProtoError, TitleId, read_u16, read_u64};

/// Magic bytes at the start of every frame.
pub const MAGIC: [u8; 4] = *b"TZSF";
/// The frame version this build writes and reads.
pub const VERSION: u8 = 1;
/// Length of the fixed header.
pub const FIXED_HEADER_LEN: usize = 72;
/// Most extension bytes a header may carry.
pub const MAX_EXTENSIONS_LEN: usize = 4096;
/// Largest payload accepted (64 MiB of plaintext plus the tag).
pub const MAX_PAYLOAD_LEN: u64 = (64 << 20) + TAG_LEN as u64;
/// The AEAD tag's length.
pub const TAG_LEN: usize = 16;
/// What a segment's frame adds to its plaintext, without extensions (the
/// fixed header and the AEAD tag): a progress bar's or a budget's estimate.
pub const OVERHEAD: usize = FIXED_HEADER_LEN + TAG_LEN;
/// Extension types with this bit set must be understood by the reader.
pub const CRITICAL_EXTENSION: u16 = 0x8000;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A fixed-size piece of the title's media bytes.
    Media = 1,
    /// Container initialisation data (reserved for packaged formats).
    Init = 2,
}

impl FrameKind {
    fn from_u8(b: u8) -> Result<Self, ProtoError> {
        match b {
            1 => Ok(Self::Media),
            2 => Ok(Self::Init),
            other => Err(ProtoError::invalid("frame kind", format!("unknown kind {other}"))),
        }
    }
}

/// One header extension (type, value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// Type; [`CRITICAL_EXTENSION`] set means "do not ignore".
    pub kind: u16,
    /// Value, at most 65535 bytes.
    pub value: Vec<u8>,
}

/// A parsed frame header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the payload is.
    pub kind: FrameKind,
    /// Data owner: the title this frame belongs to.
    pub title: TitleId,
    /// Position in the title, from 0.
    pub sequence: u64,
    /// Ciphertext length including the tag.
    pub payload_len: u64,
    /// The AEAD nonce.
    pub nonce: [u8; 12],
    /// Header extensions, in order.
    pub extensions: Vec<Extension>,
}

impl FrameHeader {
    /// Encoded header length (fixed part and extensions).
    pub fn encoded_len(&self) -> usize {
        FIXED_HEADER_LEN + self.extensions_len()
    }

    fn extensions_len(&self) -> usize {
        self.extensions.iter().map(|e| 4 + e.value.len()).sum()
    }

    /// Encodes the header. Fails if the extensions are too large.
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let ext_len = self.extensions_len();
        if ext_len > MAX_EXTENSIONS_LEN {
            return Err(ProtoError::invalid("frame extensions", format!("{ext_len} bytes, at most {MAX_EXTENSIONS_LEN}")));
        }
        if self.payload_len < TAG_LEN as u64 || self.payload_len > MAX_PAYLOAD_LEN {
            return Err(ProtoError::invalid("frame payload length", self.payload_len.to_string()));
        }
        let mut out = Vec::with_capacity(FIXED_HEADER_LEN + ext_len);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&(ext_len as u16).to_be_bytes());
        out.extend_from_slice(&self.title.to_wire());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.payload_len.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&[0u8; 4]);
        for e in &self.extensions {
            out.extend_from_slice(&e.kind.to_be_bytes());
            out.extend_from_slice(&(e.value.len() as u16).to_be_bytes());
            out.extend_from_slice(&e.value);
        }
        Ok(out)
    }

    /// Total frame length: header and payload.
    pub fn frame_len(&self) -> u64 {
        self.encoded_len() as u64 + self.payload_len
    }
}

/// Parses a frame header from the start of `bytes` (the payload may follow or
/// not, so a stream can be checked before its body arrives).
/// Returns the header and its encoded length.
pub fn parse_header(bytes: &[u8]) -> Result<(FrameHeader, usize), ProtoError> {
    let need = |n: usize| ProtoError::need(bytes, n, "frame header");
    need(FIXED_HEADER_LEN)?;
    ProtoError::check_lead(bytes, MAGIC, VERSION, "frame")?;
    let kind = FrameKind::from_u8(bytes[5])?;
    let ext_len = read_u16(bytes, 6) as usize;
    if ext_len > MAX_EXTENSIONS_LEN {
        return Err(ProtoError::invalid("frame extensions", format!("{ext_len} bytes, at most {MAX_EXTENSIONS_LEN}")));
    }
    let mut title = [0u8; TITLE_ID_LEN];
    title.copy_from_slice(&bytes[8..40]);
    let title = TitleId::from_wire(&title)?;
    let sequence = read_u64(bytes, 40);
    let payload_len = read_u64(bytes, 48);
    if payload_len < TAG_LEN as u64 || payload_len > MAX_PAYLOAD_LEN {
        return Err(ProtoError::invalid("frame payload length", payload_len.to_string()));
    }
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&bytes[56..68]);
    if bytes[68..72] != [0u8; 4] {
        return Err(ProtoError::invalid("frame reserved bytes", "must be zero"));
    }
    need(FIXED_HEADER_LEN + ext_len)?;
    let mut extensions = Vec::new();
    let mut rest = &bytes[FIXED_HEADER_LEN..FIXED_HEADER_LEN + ext_len];
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(ProtoError::invalid("frame extension", "truncated TLV header"));
        }
        let kind = read_u16(rest, 0);
        let len = read_u16(rest, 2) as usize;
        if rest.len() < 4 + len {
            return Err(ProtoError::invalid("frame extension", format!("type {kind:#06x} value overruns the extensions")));
        }
        if kind & CRITICAL_EXTENSION != 0 {
            return Err(ProtoError::invalid("frame extension", format!("unknown critical extension {kind:#06x}")));
        }
        extensions.push(Extension { kind, value: rest[4..4 + len].to_vec() });
        rest = &rest[4 + len..];
    }
    let header = FrameHeader { kind, title, sequence, payload_len, nonce, extensions };
    Ok((header, FIXED_HEADER_LEN + ext_len))
}

/// A whole frame, borrowed from its bytes.
#[derive(Debug, Clone)]
pub struct Frame<'a> {
    /// The parsed header.
    pub header: FrameHeader,
    /// The header exactly as encoded (the AEAD's associated data).
    pub header_bytes: &'a [u8],
    /// Ciphertext and tag.
    pub payload: &'a [u8],
}

/// Parses a whole frame; its length must match the header exactly.
pub fn parse_frame(bytes: &[u8]) -> Result<Frame<'_>, ProtoError> {
    let (header, header_len) = parse_header(bytes)?;
    let total = header_len as u64 + header.payload_len;
    if (bytes.len() as u64) < total {
        return Err(ProtoError::Truncated { what: "frame payload", need: total as usize, have: bytes.len() });
    }
    if (bytes.len() as u64) > total {
        return Err(ProtoError::Trailing { what: "frame", extra: (bytes.len() as u64 - total) as usize });
    }
    Ok(Frame { header, header_bytes: &bytes[..header_len], payload: &bytes[header_len..] })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header() -> FrameHeader {
        FrameHeader {
            kind: FrameKind::Media,
            title: TitleId::new("movie-1").unwrap(),
            sequence: 42,
            payload_len: 100,
            nonce: [9; 12],
            extensions: vec![Extension { kind: 7, value: b"hi".to_vec() }],
        }
    }

    fn frame_bytes() -> Vec<u8> {
        let h = header();
        let mut b = h.encode().unwrap();
        b.extend(std::iter::repeat_n(0xAB, 100));
        b
    }

    #[test]
    fn round_trip() {
        let b = frame_bytes();
        let f = parse_frame(&b).unwrap();
        assert_eq!(f.header, header());
        assert_eq!(f.header_bytes.len(), FIXED_HEADER_LEN + 6);
        assert_eq!(f.payload.len(), 100);
        assert_eq!(f.header.frame_len(), b.len() as u64);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = frame_bytes();
        for n in 0..b.len() {
            assert!(parse_frame(&b[..n]).is_err(), "prefix of {n} bytes parsed");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(parse_frame(&long), Err(ProtoError::Trailing { .. })));
    }

    #[test]
    fn hostile_fields_are_rejected() {
        let base = frame_bytes();
        let cases: Vec<(usize, u8, &str)> = vec![
            (0, b'X', "magic"),
            (4, 2, "version"),
            (5, 0, "kind 0"),
            (5, 9, "kind 9"),
            (6, 0xFF, "ext len huge"),
            (8, 0, "empty title"),
            (8, b'A', "upper-case title"),
            (48, 0xFF, "payload len huge"),
            (70, 1, "reserved"),
            (72, 0x80, "critical extension"),
            (75, 200, "TLV overrun"),
        ];
        for (at, val, what) in cases {
            let mut b = base.clone();
            b[at] = val;
            assert!(parse_frame(&b).is_err(), "{what} accepted");
        }
    }

    #[test]
    fn tiny_payload_rejected() {
        let mut h = header();
        h.payload_len = 3;
        assert!(h.encode().is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        // A cheap, deterministic stand-in for the fuzzer in every test run.
        let mut state = 0x1234_5678_9abc_def0u64;
        let base = frame_bytes();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut b = base.clone();
            let at = (state as usize) % b.len();
            b[at] = (state >> 32) as u8;
            let cut = ((state >> 40) as usize) % (b.len() + 1);
            let _ = parse_frame(&b[..cut]);
            let _ = parse_header(&b[..cut]);
        }
    }
}

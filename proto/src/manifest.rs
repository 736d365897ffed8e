//! The manifest: a title's signed table of contents, itself stored as a blob.
//!
//! ```text
//! offset size  field
//!  0      4    magic "TZMF"
//!  4      1    format version (1)
//!  5      3    reserved, zero
//!  8     32    title id, zero padded
//! 40      4    manifest version (bumped on re-ingest), big-endian
//! 44      4    segment size S in bytes (every segment's plaintext is S; the last is padded)
//! 48      8    plaintext length L (the title's true length)
//! 56      8    running time in milliseconds (0 = unknown)
//! 64      8    created, Unix seconds
//! 72      4    segment count N = ceil(L / S)
//! 76      2    chapter count C
//! 78      1    media type length M (1..=100)
//! 79      M    media type, printable ASCII (e.g. "video/mp4")
//!  .      .    C chapters: start ms (u64), byte offset (u64), name length (u16, <= 1024), UTF-8 name
//!  .   32*N    segment addresses (blake3 of each framed segment), in order
//!  .     32    signer: the origin's Ed25519 public key
//!  .     64    Ed25519 signature over every byte before it
//! ```
//! All integers are big-endian.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::title::TITLE_ID_LEN;
use crate::{BlobAddress, ProtoError, TitleId, read_u16, read_u32, read_u64};

/// Magic bytes of a manifest.
pub const MAGIC: [u8; 4] = *b"TZMF";
/// Format version this build reads and writes.
pub const VERSION: u8 = 1;
/// Smallest segment size accepted.
pub const MIN_SEGMENT_SIZE: u32 = 1024;
/// Largest segment size accepted.
pub const MAX_SEGMENT_SIZE: u32 = 64 << 20;
/// Most segments a manifest may list (256 TiB at the largest size).
pub const MAX_SEGMENTS: u32 = 1 << 22;
/// Most chapters.
pub const MAX_CHAPTERS: u16 = 4096;
/// Longest chapter name in bytes.
pub const MAX_CHAPTER_NAME: usize = 1024;
/// Longest media type.
pub const MAX_MEDIA_TYPE: usize = 100;
const FIXED_LEN: usize = 79;
const TRAILER_LEN: usize = 32 + 64;

/// The file extension players expect for a media type (so they pick the
/// right demuxer from a URL's name); "bin" when unknown.
pub fn extension_for(media_type: &str) -> &'static str {
    match media_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
        "video/mp4" | "application/mp4" => "mp4",
        "audio/mp4" => "m4a",
        "video/webm" => "webm",
        "audio/webm" => "weba",
        "video/x-matroska" | "video/matroska" => "mkv",
        "video/mp2t" => "ts",
        "video/quicktime" => "mov",
        "audio/mpeg" => "mp3",
        "audio/ogg" | "video/ogg" => "ogg",
        _ => "bin",
    }
}

/// A chapter stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chapter {
    /// Start time in milliseconds.
    pub start_ms: u64,
    /// Byte offset in the plaintext where the chapter starts (exact or estimated).
    pub byte_offset: u64,
    /// Display name.
    pub name: String,
}

/// A title's manifest, before signing or after verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The title.
    pub title: TitleId,
    /// Bumped each time the title is re-ingested.
    pub version: u32,
    /// MIME type of the plaintext, e.g. `video/mp4`.
    pub media_type: String,
    /// Running time in milliseconds, 0 when unknown.
    pub running_time_ms: u64,
    /// The title's true length in bytes.
    pub plaintext_len: u64,
    /// Every segment's plaintext length (the last is padded up to it).
    pub segment_size: u32,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// Chapter stops, ascending.
    pub chapters: Vec<Chapter>,
    /// Address of each framed segment, in order.
    pub segments: Vec<BlobAddress>,
}

/// Number of segments a title of `len` bytes needs at `segment_size`.
pub fn segment_count(len: u64, segment_size: u32) -> u64 {
    len.div_ceil(u64::from(segment_size.max(1)))
}

impl Manifest {
    /// True plaintext bytes held by segment `index` (the rest is padding).
    pub fn segment_plain_len(&self, index: u64) -> u64 {
        let s = u64::from(self.segment_size);
        let start = index.saturating_mul(s);
        self.plaintext_len.saturating_sub(start).min(s)
    }

    /// Which segment holds plaintext byte `offset`.
    pub fn segment_of(&self, offset: u64) -> u64 {
        offset / u64::from(self.segment_size)
    }

    /// Checks the invariants every manifest must hold.
    pub fn validate(&self) -> Result<(), ProtoError> {
        let bad = |r: String| Err(ProtoError::invalid("manifest", r));
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return bad(format!("segment size {} outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}", self.segment_size));
        }
        let want = segment_count(self.plaintext_len, self.segment_size);
        if self.segments.len() as u64 != want {
            return bad(format!("{} segments listed, {} bytes need {want}", self.segments.len(), self.plaintext_len));
        }
        if self.segments.len() as u64 > u64::from(MAX_SEGMENTS) {
            return bad(format!("more than {MAX_SEGMENTS} segments"));
        }
        if self.media_type.is_empty()
            || self.media_type.len() > MAX_MEDIA_TYPE
            || !self.media_type.bytes().all(|c| (0x21..0x7f).contains(&c))
        {
            return bad(format!("media type {:?} is not 1..={MAX_MEDIA_TYPE} printable ASCII bytes", self.media_type));
        }
        if self.chapters.len() > usize::from(MAX_CHAPTERS) {
            return bad(format!("more than {MAX_CHAPTERS} chapters"));
        }
        let mut prev = 0;
        for c in &self.chapters {
            if c.name.len() > MAX_CHAPTER_NAME {
                return bad(format!("chapter name longer than {MAX_CHAPTER_NAME} bytes"));
            }
            if c.byte_offset > self.plaintext_len {
                return bad(format!("chapter {:?} starts past the end", c.name));
            }
            if c.start_ms < prev {
                return bad("chapters out of order".into());
            }
            prev = c.start_ms;
        }
        Ok(())
    }

    fn encode_body(&self) -> Result<Vec<u8>, ProtoError> {
        self.validate()?;
        let mut out = Vec::with_capacity(FIXED_LEN + 32 * self.segments.len() + TRAILER_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&[0u8; 3]);
        out.extend_from_slice(&self.title.to_wire());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.segment_size.to_be_bytes());
        out.extend_from_slice(&self.plaintext_len.to_be_bytes());
        out.extend_from_slice(&self.running_time_ms.to_be_bytes());
        out.extend_from_slice(&self.created.to_be_bytes());
        out.extend_from_slice(&(self.segments.len() as u32).to_be_bytes());
        out.extend_from_slice(&(self.chapters.len() as u16).to_be_bytes());
        out.push(self.media_type.len() as u8);
        out.extend_from_slice(self.media_type.as_bytes());
        for c in &self.chapters {
            out.extend_from_slice(&c.start_ms.to_be_bytes());
            out.extend_from_slice(&c.byte_offset.to_be_bytes());
            out.extend_from_slice(&(c.name.len() as u16).to_be_bytes());
            out.extend_from_slice(c.name.as_bytes());
        }
        for s in &self.segments {
            out.extend_from_slice(s.as_bytes());
        }
        Ok(out)
    }

    /// Encodes and signs with the origin's key; the result is the manifest blob.
    pub fn sign(&self, key: &SigningKey) -> Result<Vec<u8>, ProtoError> {
        let mut out = self.encode_body()?;
        out.extend_from_slice(key.verifying_key().as_bytes());
        let sig = key.sign(&out);
        out.extend_from_slice(&sig.to_bytes());
        Ok(out)
    }
}

/// A decoded manifest with its signature, not yet trusted.
#[derive(Debug, Clone)]
pub struct SignedManifest {
    /// The fields.
    pub manifest: Manifest,
    /// The key that claims to have signed it.
    pub signer: [u8; 32],
    signature: [u8; 64],
    signed_len: usize,
    bytes: Vec<u8>,
}

impl SignedManifest {
    /// Parses the structure without checking the signature.
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        let need = |n: usize| ProtoError::need(b, n, "manifest");
        need(FIXED_LEN)?;
        ProtoError::check_lead(b, MAGIC, VERSION, "manifest")?;
        if b[5..8] != [0u8; 3] {
            return Err(ProtoError::invalid("manifest reserved bytes", "must be zero"));
        }
        let mut t = [0u8; TITLE_ID_LEN];
        t.copy_from_slice(&b[8..40]);
        let title = TitleId::from_wire(&t)?;
        let version = read_u32(b, 40);
        let segment_size = read_u32(b, 44);
        let plaintext_len = read_u64(b, 48);
        let running_time_ms = read_u64(b, 56);
        let created = read_u64(b, 64);
        let count = read_u32(b, 72);
        if count > MAX_SEGMENTS {
            return Err(ProtoError::invalid("manifest", format!("{count} segments, at most {MAX_SEGMENTS}")));
        }
        let chapters_n = read_u16(b, 76);
        if chapters_n > MAX_CHAPTERS {
            return Err(ProtoError::invalid("manifest", format!("{chapters_n} chapters, at most {MAX_CHAPTERS}")));
        }
        let mt_len = b[78] as usize;
        let mut at = FIXED_LEN;
        need(at + mt_len)?;
        let media_type =
            std::str::from_utf8(&b[at..at + mt_len]).map_err(|_| ProtoError::invalid("manifest", "media type not UTF-8"))?.to_string();
        at += mt_len;
        let mut chapters = Vec::with_capacity(usize::from(chapters_n).min(64));
        for _ in 0..chapters_n {
            need(at + 18)?;
            let start_ms = read_u64(b, at);
            let byte_offset = read_u64(b, at + 8);
            let n = read_u16(b, at + 16) as usize;
            if n > MAX_CHAPTER_NAME {
                return Err(ProtoError::invalid("manifest", format!("chapter name of {n} bytes")));
            }
            at += 18;
            need(at + n)?;
            let name =
                std::str::from_utf8(&b[at..at + n]).map_err(|_| ProtoError::invalid("manifest", "chapter name not UTF-8"))?.to_string();
            at += n;
            chapters.push(Chapter { start_ms, byte_offset, name });
        }
        let seg_bytes = count as usize * 32;
        need(at + seg_bytes + TRAILER_LEN)?;
        let segments = b[at..at + seg_bytes].chunks_exact(32).map(BlobAddress::from_slice).collect::<Result<Vec<_>, _>>()?;
        at += seg_bytes;
        let mut signer = [0u8; 32];
        signer.copy_from_slice(&b[at..at + 32]);
        let signed_len = at + 32;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[signed_len..signed_len + 64]);
        let end = signed_len + 64;
        if b.len() > end {
            return Err(ProtoError::Trailing { what: "manifest", extra: b.len() - end });
        }
        let manifest = Manifest { title, version, media_type, running_time_ms, plaintext_len, segment_size, created, chapters, segments };
        manifest.validate()?;
        Ok(Self { manifest, signer, signature, signed_len, bytes: b.to_vec() })
    }

    /// Checks the signature against the origin key the caller trusts.
    pub fn verify(&self, trusted: &VerifyingKey) -> Result<&Manifest, ProtoError> {
        if self.signer != *trusted.as_bytes() {
            return Err(ProtoError::BadSignature { what: "manifest (signed by another key)" });
        }
        let sig = Signature::from_bytes(&self.signature);
        trusted.verify_strict(&self.bytes[..self.signed_len], &sig).map_err(|_| ProtoError::BadSignature { what: "manifest" })?;
        Ok(&self.manifest)
    }

    /// The manifest blob's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Decodes and verifies a manifest blob against the trusted origin key.
pub fn open(bytes: &[u8], trusted: &VerifyingKey) -> Result<Manifest, ProtoError> {
    let sm = SignedManifest::decode(bytes)?;
    sm.verify(trusted)?;
    Ok(sm.manifest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn sample(len: u64, size: u32) -> Manifest {
        let n = segment_count(len, size);
        Manifest {
            title: TitleId::new("movie").unwrap(),
            version: 1,
            media_type: "video/mp4".into(),
            running_time_ms: 60_000,
            plaintext_len: len,
            segment_size: size,
            created: 1_790_000_000,
            chapters: vec![
                Chapter { start_ms: 0, byte_offset: 0, name: "Opening".into() },
                Chapter { start_ms: 30_000, byte_offset: len / 2, name: "Middle ünïcode".into() },
            ],
            segments: (0..n).map(|i| BlobAddress::of(&i.to_be_bytes())).collect(),
        }
    }

    #[test]
    fn sign_decode_verify_round_trip() {
        for (len, size) in [(0, 1024), (1, 1024), (1023, 1024), (1024, 1024), (1025, 1024), (10 << 20, 1 << 20)] {
            let m = sample(len, size);
            let b = m.sign(&key()).unwrap();
            assert_eq!(open(&b, &key().verifying_key()).unwrap(), m);
        }
    }

    #[test]
    fn plain_len_of_segments() {
        let m = sample(2500, 1024);
        assert_eq!(m.segments.len(), 3);
        assert_eq!([m.segment_plain_len(0), m.segment_plain_len(1), m.segment_plain_len(2)], [1024, 1024, 452]);
        assert_eq!(m.segment_plain_len(3), 0);
        assert_eq!(m.segment_of(2047), 1);
    }

    #[test]
    fn any_altered_byte_fails_and_other_keys_fail() {
        let b = sample(5000, 1024).sign(&key()).unwrap();
        for at in 0..b.len() {
            let mut bad = b.clone();
            bad[at] ^= 0x01;
            assert!(open(&bad, &key().verifying_key()).is_err(), "flip at {at} accepted");
        }
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(open(&b, &other.verifying_key()).is_err());
        // Re-signed by another key with its own key embedded: still refused by the trusted key.
        let forged = sample(5000, 1024).sign(&other).unwrap();
        assert!(open(&forged, &key().verifying_key()).is_err());
    }

    #[test]
    fn truncations_and_invalid_manifests() {
        let b = sample(5000, 1024).sign(&key()).unwrap();
        for n in 0..b.len() {
            assert!(SignedManifest::decode(&b[..n]).is_err(), "prefix {n} decoded");
        }
        let mut m = sample(5000, 1024);
        m.segments.pop();
        assert!(m.sign(&key()).is_err(), "wrong count signed");
        let mut m = sample(5000, 1024);
        m.segment_size = 10;
        assert!(m.sign(&key()).is_err(), "tiny segments signed");
        let mut m = sample(5000, 1024);
        m.media_type = "video/mp4\n".into();
        assert!(m.sign(&key()).is_err(), "control char in media type signed");
        let mut m = sample(5000, 1024);
        m.chapters.reverse();
        assert!(m.sign(&key()).is_err(), "chapters out of order signed");
        let mut huge = b.clone();
        huge[72..76].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(SignedManifest::decode(&huge).is_err());
    }
}

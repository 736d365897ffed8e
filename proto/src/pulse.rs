//! The pulse (`GET /v1/pulse?title=T` on every node, edge and peer): what a
//! smart client asks each source before choosing where to fetch, and what
//! the source answers: its health, its load, and which segments of the
//! title it holds as a bitmap. One type for both ends; the edge builds it,
//! the client reads it with [`Pulse::parse`] (bounded, hostile input).

use serde::{Deserialize, Serialize};

use crate::ProtoError;
use crate::manifest::MAX_SEGMENTS;

/// What an edge-crate server is (in its config, its join, its pulse).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum EdgeRole {
    /// Mirrors on demand and evicts (an Edge Server).
    #[default]
    Edge,
    /// Holds complete staged sets, pinned (a Neuro Node).
    Node,
    /// A smart client's peer service: serves its cached and pre-cast
    /// segments to other clients; joins with a validation certificate.
    Peer,
}

impl EdgeRole {
    /// The role named `name` on the wire, if it is one.
    pub fn from_name(name: &str) -> Option<EdgeRole> {
        match name {
            "edge" => Some(EdgeRole::Edge),
            "node" => Some(EdgeRole::Node),
            "peer" => Some(EdgeRole::Peer),
            _ => None,
        }
    }

    /// Its name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeRole::Edge => "edge",
            EdgeRole::Node => "node",
            EdgeRole::Peer => "peer",
        }
    }
}

/// A source's health as it reports it: only `Ok` is used for playback.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Serving.
    Ok,
    /// No revocation list read yet: it refuses certificates.
    RevocationsUnknown,
    /// Its revocation list is older than its limit.
    RevocationsStale,
    /// A state this version does not know (a newer source): not ok.
    #[serde(other)]
    Unrecognised,
}

/// A source's answer to a pulse.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pulse {
    /// Its name in the cluster.
    pub name: String,
    /// What it is.
    pub role: EdgeRole,
    /// Its software version.
    pub version: String,
    /// Whether it serves.
    pub health: Health,
    /// How busy it is.
    pub load: Load,
    /// Which segments of the title asked for it holds (absent when no title was asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<Segments>,
}

/// A source's load at the time of the pulse.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Load {
    /// Requests served so far.
    pub requests: u64,
    /// Requests in hand now (not counting the pulse).
    pub in_flight: u64,
    /// Upstream fetches in the air.
    pub queued: u64,
    /// Bytes sent so far.
    pub bytes_out_total: u64,
    /// Bytes sent per second over the last window of at least a second.
    pub bytes_out_per_s: f64,
    /// Its configured egress cap, if any.
    pub capacity_bytes_per_s: Option<u64>,
}

/// The segments of one title a source holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Segments {
    /// The title.
    pub title: String,
    /// How many it holds.
    pub held: u64,
    /// How many the title has (absent: the source does not know the title).
    pub total: Option<u64>,
    /// Which ones.
    pub bitmap: SegmentBitmap,
}

/// Which segments are held: bit `i` for segment `i`, the most significant
/// bit of each byte first; two hex digits per 8 segments on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentBitmap(Vec<u8>);

/// The longest bitmap read: one bit per segment a manifest may hold.
pub const MAX_BITMAP_BYTES: usize = MAX_SEGMENTS as usize / 8;

impl SegmentBitmap {
    /// An empty bitmap for `segments` segments.
    pub fn new(segments: usize) -> Self {
        SegmentBitmap(vec![0; segments.div_ceil(8)])
    }

    /// Marks segment `i` held (ignored past the end).
    pub fn set(&mut self, i: usize) {
        if let Some(b) = self.0.get_mut(i / 8) {
            *b |= 0x80 >> (i % 8);
        }
    }

    /// Whether segment `i` is held.
    pub fn holds(&self, i: usize) -> bool {
        self.0.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
    }

    /// No segment known (the source does not know the title).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Held or not, for each of a title's `segments`.
    pub fn to_holds(&self, segments: usize) -> Vec<bool> {
        (0..segments).map(|i| self.holds(i)).collect()
    }
}

impl Serialize for SegmentBitmap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for SegmentBitmap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if text.len() > 2 * MAX_BITMAP_BYTES {
            return Err(serde::de::Error::custom("segment bitmap longer than a manifest may be"));
        }
        hex::decode(text.as_bytes()).map(SegmentBitmap).map_err(serde::de::Error::custom)
    }
}

/// The longest pulse read: its bitmap and the rest.
pub const MAX_PULSE_BYTES: usize = 2 * MAX_BITMAP_BYTES + (64 << 10);

impl Pulse {
    /// Reads a pulse from a source's answer (hostile bytes: bounded, never panics).
    pub fn parse(body: &[u8]) -> Result<Pulse, ProtoError> {
        crate::json::parse_bounded("pulse", MAX_PULSE_BYTES, body)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pulse(segments: Option<Segments>) -> Pulse {
        Pulse {
            name: "edge-1".into(),
            role: EdgeRole::Edge,
            version: "0.1.0".into(),
            health: Health::Ok,
            load: Load { requests: 7, in_flight: 1, bytes_out_per_s: 1.5e6, capacity_bytes_per_s: Some(2_000_000), ..Load::default() },
            segments,
        }
    }

    #[test]
    fn a_pulse_reads_back_as_written_and_its_bitmap_is_hex_msb_first() {
        let mut bits = SegmentBitmap::new(10);
        for i in [0, 7, 9, 200] {
            bits.set(i);
        }
        let p = pulse(Some(Segments { title: "film".into(), held: 3, total: Some(10), bitmap: bits }));
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(r#""bitmap":"8140""#), "{text}");
        let back = Pulse::parse(text.as_bytes()).unwrap();
        assert_eq!(back, p);
        let holds = back.segments.unwrap().bitmap.to_holds(10);
        assert_eq!(holds.iter().enumerate().filter(|(_, h)| **h).map(|(i, _)| i).collect::<Vec<_>>(), vec![0, 7, 9]);
        // Without a title: no segments at all.
        let bare = serde_json::to_string(&pulse(None)).unwrap();
        assert!(!bare.contains("segments"));
        assert_eq!(Pulse::parse(bare.as_bytes()).unwrap().segments, None);
    }

    #[test]
    fn hostile_pulses_are_refused_or_read_safely() {
        let ok = serde_json::to_string(&pulse(None)).unwrap();
        // An unknown health is not ok; an unknown role is refused.
        let newer = ok.replace(r#""health":"ok""#, r#""health":"resting""#);
        assert_eq!(Pulse::parse(newer.as_bytes()).unwrap().health, Health::Unrecognised);
        assert!(Pulse::parse(ok.replace(r#""role":"edge""#, r#""role":"origin""#).as_bytes()).is_err());
        // Bad hex, an oversized bitmap, an oversized body, not JSON.
        let with =
            |bitmap: &str| format!(r#"{},"segments":{{"title":"t","held":0,"total":null,"bitmap":"{bitmap}"}}}}"#, &ok[..ok.len() - 1]);
        assert!(Pulse::parse(with("zz").as_bytes()).is_err());
        assert!(Pulse::parse(with("f").as_bytes()).is_err());
        assert!(Pulse::parse(with(&"ff".repeat(MAX_BITMAP_BYTES)).as_bytes()).is_ok());
        assert!(Pulse::parse(with(&"ff".repeat(MAX_BITMAP_BYTES + 1)).as_bytes()).is_err());
        assert!(Pulse::parse(&vec![b' '; MAX_PULSE_BYTES + 1]).is_err());
        for junk in [&b""[..], b"null", b"[]", b"{\"name\":1}", b"\xff\xfe"] {
            assert!(Pulse::parse(junk).is_err());
        }
        // Bits past the title's end are ignored; a short bitmap holds nothing more.
        let mut b = SegmentBitmap::new(3);
        b.set(2);
        b.set(3);
        assert_eq!(b.to_holds(3), vec![false, false, true]);
        assert_eq!(SegmentBitmap::default().to_holds(2), vec![false, false]);
    }
}

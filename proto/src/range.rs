//! RFC 9110 range requests and conditionals, as a pure decision.
//!
//! [`evaluate`] takes the request's `Range`, `If-Range` and `If-None-Match`
//! values, the representation's strong ETag and length, and returns what to
//! answer: 304, 200 with the whole body, 206 with one or several ranges,
//! 416, or 400 with a reason. No I/O; the edge turns the decision into bytes.
//!
//! Choices where RFC 9110 leaves room: a malformed `Range` is a 400 (the
//! issue asks for it; RFC 9110 would also allow ignoring it); a range unit
//! other than `bytes` is ignored (200), as RFC 9110 requires; at most
//! [`Conditions::max_ranges`] ranges per request (never more than
//! [`MAX_RANGES`]), more is a 400; unsatisfiable ranges among satisfiable
//! ones are dropped; overlapping and adjacent ranges are merged (RFC 9110
//! section 14.2 lets a server coalesce them) and the parts are sent in
//! ascending order, so no byte is sent twice: 64 overlapping ranges of a
//! blob cost what the blob costs, not 64 times it.

use std::ops::Range;

/// Most ranges one request may ask for, whatever a server configures.
pub const MAX_RANGES: usize = 64;

/// One range as written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `first-last`, inclusive.
    FromTo(u64, u64),
    /// `first-`.
    From(u64),
    /// `-suffix`: the last `suffix` bytes.
    Suffix(u64),
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 304 Not Modified.
    NotModified,
    /// 200 with the whole representation.
    Full,
    /// 206 with these byte ranges (end exclusive), one or several (multipart).
    Partial(Vec<Range<u64>>),
    /// 416 Range Not Satisfiable (`Content-Range: bytes */len`).
    Unsatisfiable,
    /// 400 with a reason.
    BadRequest(String),
}

/// The request headers that matter, as received (`None` when absent), and
/// the server's cap on ranges per request.
#[derive(Debug, Clone, Copy)]
pub struct Conditions<'a> {
    /// `Range`.
    pub range: Option<&'a str>,
    /// `If-Range`.
    pub if_range: Option<&'a str>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'a str>,
    /// Most ranges accepted in one `Range` (at most [`MAX_RANGES`]).
    pub max_ranges: usize,
}

impl Default for Conditions<'_> {
    fn default() -> Self {
        Self { range: None, if_range: None, if_none_match: None, max_ranges: MAX_RANGES }
    }
}

/// Parses a `Range` value. `Ok(None)` for a unit other than bytes (to be ignored).
pub fn parse_range(value: &str) -> Result<Option<Vec<RangeSpec>>, String> {
    parse_range_max(value, MAX_RANGES)
}

/// Parses a `Range` value of at most `max` ranges (and never more than [`MAX_RANGES`]).
pub fn parse_range_max(value: &str, max: usize) -> Result<Option<Vec<RangeSpec>>, String> {
    if let Some(spec) = one_plain_range(value) {
        return Ok(Some(vec![spec]));
    }
    parse_range_general(value, max)
}

/// `bytes=first-last` or `bytes=first-`, digits only, nothing else: what
/// nearly every client sends, read in one pass, where the general path
/// trims and splits the value several times over (it was a tenth of the
/// edge's own work per 4 KiB range). `None` for anything else, which the
/// general path then decides, so the answer is the same either way (a test
/// compares the two on generated values).
fn one_plain_range(value: &str) -> Option<RangeSpec> {
    let set = value.as_bytes().strip_prefix(b"bytes=")?;
    let dash = set.iter().position(|&c| c == b'-')?;
    let first = byte_position(&set[..dash])?;
    match &set[dash + 1..] {
        [] => Some(RangeSpec::From(first)),
        last => byte_position(last).filter(|&l| first <= l).map(|l| RangeSpec::FromTo(first, l)),
    }
}

/// 1 to 19 ASCII digits (19 nines fit in a u64), as the general path accepts.
fn byte_position(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &c| c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0')))
}

/// [`parse_range_max`] without the one-pass path: every form the RFC
/// allows, read the long way (public so the fuzz target can check that
/// both paths give the same answer).
pub fn parse_range_general(value: &str, max: usize) -> Result<Option<Vec<RangeSpec>>, String> {
    let max = max.clamp(1, MAX_RANGES);
    let value = value.trim();
    let Some((unit, set)) = value.split_once('=') else {
        return Err(format!("Range {value:?} has no '='"));
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ok(None);
    }
    let mut out = Vec::new();
    for part in set.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue; // RFC 9110 allows empty list elements
        }
        if out.len() == max {
            return Err(format!("more than {max} ranges"));
        }
        let (a, b) = part.split_once('-').ok_or_else(|| format!("range {part:?} has no '-'"))?;
        let num = |s: &str| -> Result<u64, String> {
            if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!("{s:?} in range {part:?} is not a byte position"));
            }
            s.parse().map_err(|_| format!("{s:?} is out of range"))
        };
        let (a, b) = (a.trim(), b.trim());
        let spec = match (a.is_empty(), b.is_empty()) {
            (true, true) => return Err(format!("range {part:?} is empty")),
            (true, false) => RangeSpec::Suffix(num(b)?),
            (false, true) => RangeSpec::From(num(a)?),
            (false, false) => {
                let (first, last) = (num(a)?, num(b)?);
                if first > last {
                    return Err(format!("range {part:?} ends before it starts"));
                }
                RangeSpec::FromTo(first, last)
            }
        };
        out.push(spec);
    }
    if out.is_empty() {
        return Err("Range has no ranges".into());
    }
    Ok(Some(out))
}

/// The satisfiable part of each spec against a representation of `len` bytes.
pub fn resolve(specs: &[RangeSpec], len: u64) -> Vec<Range<u64>> {
    specs
        .iter()
        .filter_map(|s| match *s {
            RangeSpec::FromTo(a, b) if a < len => Some(a..b.min(len - 1) + 1),
            RangeSpec::From(a) if a < len => Some(a..len),
            RangeSpec::Suffix(n) if n > 0 && len > 0 => Some(len - n.min(len)..len),
            _ => None,
        })
        .collect()
}

/// Sorts `ranges` and merges those that overlap or touch: the same bytes,
/// each once, in ascending order.
pub fn coalesce(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    if ranges.len() < 2 {
        return ranges;
    }
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Whether an entity-tag list (`If-None-Match`) matches `etag` (weak comparison).
fn none_match_hits(list: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let want = bare(etag);
    list.split(',').any(|t| t.trim() == "*" || bare(t) == want)
}

/// Decides the answer to a GET or HEAD of a representation with strong `etag`
/// (quoted) and `len` bytes.
pub fn evaluate(c: &Conditions<'_>, etag: &str, len: u64) -> Decision {
    if let Some(inm) = c.if_none_match
        && none_match_hits(inm, etag)
    {
        return Decision::NotModified;
    }
    let Some(range) = c.range else { return Decision::Full };
    // If-Range: the range applies only if the strong validator still matches;
    // a date (we send no Last-Modified) or another tag means "send it all".
    if let Some(ir) = c.if_range
        && ir.trim() != etag
    {
        return Decision::Full;
    }
    match parse_range_max(range, c.max_ranges) {
        Err(reason) => Decision::BadRequest(reason),
        Ok(None) => Decision::Full,
        Ok(Some(specs)) => {
            let ranges = coalesce(resolve(&specs, len));
            if ranges.is_empty() { Decision::Unsatisfiable } else { Decision::Partial(ranges) }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::single_range_in_vec_init)] // one-range 206s are vectors of one range
mod tests {
    use super::*;

    const E: &str = "\"abc\"";

    fn ev(range: &str) -> Decision {
        evaluate(&Conditions { range: Some(range), ..Default::default() }, E, 1000)
    }

    #[test]
    fn single_suffix_open_and_multi() {
        assert_eq!(ev("bytes=0-99"), Decision::Partial(vec![0..100]));
        assert_eq!(ev("bytes=990-2000"), Decision::Partial(vec![990..1000]));
        assert_eq!(ev("bytes=-10"), Decision::Partial(vec![990..1000]));
        assert_eq!(ev("bytes=-5000"), Decision::Partial(vec![0..1000]));
        assert_eq!(ev("bytes=500-"), Decision::Partial(vec![500..1000]));
        assert_eq!(ev("BYTES = 0-0, 999-999"), Decision::Partial(vec![0..1, 999..1000]));
        assert_eq!(ev("bytes=0-1,,5-6"), Decision::Partial(vec![0..2, 5..7]));
        assert_eq!(ev("bytes=0-1,2000-3000"), Decision::Partial(vec![0..2]), "unsatisfiable parts dropped");
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        assert_eq!(ev("bytes=0-99,50-149"), Decision::Partial(vec![0..150]), "overlap");
        assert_eq!(ev("bytes=0-99,100-199"), Decision::Partial(vec![0..200]), "adjacent");
        assert_eq!(ev("bytes=500-599,0-9"), Decision::Partial(vec![0..10, 500..600]), "ascending order");
        assert_eq!(ev("bytes=0-9,12-19"), Decision::Partial(vec![0..10, 12..20]), "a gap stays a gap");
        assert_eq!(ev("bytes=-10,990-"), Decision::Partial(vec![990..1000]), "suffix and open range of the same tail");
        // 64 overlapping ranges of the whole: one range, each byte once.
        let all = format!("bytes={}", (0..MAX_RANGES).map(|i| format!("{i}-999")).collect::<Vec<_>>().join(","));
        assert_eq!(ev(&all), Decision::Partial(vec![0..1000]));
        assert_eq!(coalesce(vec![]), Vec::<Range<u64>>::new());
        assert_eq!(coalesce(vec![5..6, 0..10, 10..11]), vec![0..11]);
    }

    #[test]
    fn unsatisfiable_and_malformed() {
        assert_eq!(ev("bytes=1000-"), Decision::Unsatisfiable);
        assert_eq!(ev("bytes=-0"), Decision::Unsatisfiable);
        assert_eq!(ev("bytes=5000-6000,7000-"), Decision::Unsatisfiable);
        assert_eq!(evaluate(&Conditions { range: Some("bytes=0-"), ..Default::default() }, E, 0), Decision::Unsatisfiable);
        for bad in [
            "bytes",
            "bytes=",
            "bytes=5",
            "bytes=a-b",
            "bytes=9-1",
            "bytes=--1",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
        ] {
            assert!(matches!(ev(bad), Decision::BadRequest(_)), "{bad:?} was {:?}", ev(bad));
        }
        let many = format!("bytes={}", vec!["0-0"; MAX_RANGES + 1].join(","));
        assert!(matches!(ev(&many), Decision::BadRequest(_)));
        let c = |n: usize| Conditions { range: Some("bytes=0-1,4-5,8-9"), max_ranges: n, ..Default::default() };
        assert!(matches!(evaluate(&c(2), E, 1000), Decision::BadRequest(r) if r.contains("more than 2")));
        assert_eq!(evaluate(&c(3), E, 1000), Decision::Partial(vec![0..2, 4..6, 8..10]));
        assert!(matches!(evaluate(&c(1000), E, 1000), Decision::Partial(_)), "a cap over MAX_RANGES is MAX_RANGES");
        assert_eq!(ev("items=0-5"), Decision::Full, "unknown unit ignored");
    }

    #[test]
    fn the_plain_range_shortcut_answers_as_the_general_parser() {
        // Values built from the characters that matter, by a fixed generator:
        // wherever the shortcut answers, the general parser answers the same.
        let (all, plain) = (&b"bytes=BYTES0123456789-, \t9"[..], &b"0123456789-"[..]);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut taken = 0;
        for i in 0..200_000 {
            let mut v = String::from(if i % 3 == 0 { "" } else { "bytes=" });
            let alphabet = if i % 2 == 0 { plain } else { all };
            for _ in 0..(i % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(alphabet[(x % alphabet.len() as u64) as usize] as char);
            }
            for max in [1, 2, MAX_RANGES] {
                if let Some(spec) = one_plain_range(&v) {
                    taken += 1;
                    assert_eq!(parse_range_general(&v, max), Ok(Some(vec![spec])), "{v:?}");
                }
                assert_eq!(parse_range_max(&v, max), parse_range_general(&v, max), "{v:?}");
            }
        }
        assert!(taken > 1000, "the generator reached the shortcut {taken} times");
        for (v, want) in [
            ("bytes=4096-8191", Some(RangeSpec::FromTo(4096, 8191))),
            ("bytes=0-", Some(RangeSpec::From(0))),
            ("bytes=9999999999999999999-", Some(RangeSpec::From(9_999_999_999_999_999_999))),
            ("bytes=10000000000000000000-", None),
            ("bytes=5-4", None),
            ("bytes=-5", None),
            ("bytes=1-2,3-4", None),
            ("Bytes=1-2", None),
            ("bytes= 1-2", None),
        ] {
            assert_eq!(one_plain_range(v), want, "{v:?}");
        }
    }

    #[test]
    fn conditionals() {
        let c = |range, if_range, inm| evaluate(&Conditions { range, if_range, if_none_match: inm, ..Default::default() }, E, 1000);
        assert_eq!(c(None, None, Some("\"abc\"")), Decision::NotModified);
        assert_eq!(c(None, None, Some("W/\"abc\"")), Decision::NotModified, "weak comparison");
        assert_eq!(c(Some("bytes=0-1"), None, Some("\"x\", *")), Decision::NotModified);
        assert_eq!(c(None, None, Some("\"x\"")), Decision::Full);
        assert_eq!(c(Some("bytes=0-1"), Some("\"abc\""), None), Decision::Partial(vec![0..2]));
        assert_eq!(c(Some("bytes=0-1"), Some("\"old\""), None), Decision::Full);
        assert_eq!(c(Some("bytes=0-1"), Some("Wed, 21 Oct 2015 07:28:00 GMT"), None), Decision::Full);
        assert_eq!(c(Some("bytes=0-1"), Some("W/\"abc\""), None), Decision::Full, "If-Range needs a strong match");
    }
}

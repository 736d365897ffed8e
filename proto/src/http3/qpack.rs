//! QPACK (RFC 9204) without a dynamic table: the server advertises a table
//! capacity of zero, so a request's field section may only refer to the
//! static table or carry literals. Decoding is a pure function of the
//! section's bytes with a cap on the decoded size; encoding writes what
//! a response needs (status, then fields) with static references where the
//! table has the name and literal values without Huffman coding, which
//! costs a few bytes and no CPU.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

use super::huffman;
use super::{H3Code, H3Error};

/// RFC 9204, Appendix A.
pub const STATIC_TABLE: [(&str, &str); 99] = [
    (":authority", ""),
    (":path", "/"),
    ("age", "0"),
    ("content-disposition", ""),
    ("content-length", "0"),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("referer", ""),
    ("set-cookie", ""),
    (":method", "CONNECT"),
    (":method", "DELETE"),
    (":method", "GET"),
    (":method", "HEAD"),
    (":method", "OPTIONS"),
    (":method", "POST"),
    (":method", "PUT"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "103"),
    (":status", "200"),
    (":status", "304"),
    (":status", "404"),
    (":status", "503"),
    ("accept", "*/*"),
    ("accept", "application/dns-message"),
    ("accept-encoding", "gzip, deflate, br"),
    ("accept-ranges", "bytes"),
    ("access-control-allow-headers", "cache-control"),
    ("access-control-allow-headers", "content-type"),
    ("access-control-allow-origin", "*"),
    ("cache-control", "max-age=0"),
    ("cache-control", "max-age=2592000"),
    ("cache-control", "max-age=604800"),
    ("cache-control", "no-cache"),
    ("cache-control", "no-store"),
    ("cache-control", "public, max-age=31536000"),
    ("content-encoding", "br"),
    ("content-encoding", "gzip"),
    ("content-type", "application/dns-message"),
    ("content-type", "application/javascript"),
    ("content-type", "application/json"),
    ("content-type", "application/x-www-form-urlencoded"),
    ("content-type", "image/gif"),
    ("content-type", "image/jpeg"),
    ("content-type", "image/png"),
    ("content-type", "text/css"),
    ("content-type", "text/html; charset=utf-8"),
    ("content-type", "text/plain"),
    ("content-type", "text/plain;charset=utf-8"),
    ("range", "bytes=0-"),
    ("strict-transport-security", "max-age=31536000"),
    ("strict-transport-security", "max-age=31536000; includesubdomains"),
    ("strict-transport-security", "max-age=31536000; includesubdomains; preload"),
    ("vary", "accept-encoding"),
    ("vary", "origin"),
    ("x-content-type-options", "nosniff"),
    ("x-xss-protection", "1; mode=block"),
    (":status", "100"),
    (":status", "204"),
    (":status", "206"),
    (":status", "302"),
    (":status", "400"),
    (":status", "403"),
    (":status", "421"),
    (":status", "425"),
    (":status", "500"),
    ("accept-language", ""),
    ("access-control-allow-credentials", "FALSE"),
    ("access-control-allow-credentials", "TRUE"),
    ("access-control-allow-headers", "*"),
    ("access-control-allow-methods", "get"),
    ("access-control-allow-methods", "get, post, options"),
    ("access-control-allow-methods", "options"),
    ("access-control-expose-headers", "content-length"),
    ("access-control-request-headers", "content-type"),
    ("access-control-request-method", "get"),
    ("access-control-request-method", "post"),
    ("alt-svc", "clear"),
    ("authorization", ""),
    ("content-security-policy", "script-src 'none'; object-src 'none'; base-uri 'none'"),
    ("early-data", "1"),
    ("expect-ct", ""),
    ("forwarded", ""),
    ("if-range", ""),
    ("origin", ""),
    ("purpose", "prefetch"),
    ("server", ""),
    ("timing-allow-origin", "*"),
    ("upgrade-insecure-requests", "1"),
    ("user-agent", ""),
    ("x-forwarded-for", ""),
    ("x-frame-options", "deny"),
    ("x-frame-options", "sameorigin"),
];

/// Each field line counts its name, its value and this much (RFC 9114,
/// 4.2.2: the size a `SETTINGS_MAX_FIELD_SECTION_SIZE` limits).
pub const FIELD_OVERHEAD: u64 = 32;

/// One field line as decoded: borrowed from the section or the static
/// table where it can be, owned where Huffman decoding made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: Cow<'a, [u8]>,
    pub value: Cow<'a, [u8]>,
}

/// The Huffman strings a connection sent last, by their coded bytes. A
/// client sends the same fields again and again (its credential on every
/// request, a path for every range of one blob), and without a dynamic
/// table each comes coded anew: decoding them was the largest cost of a
/// small answer. A hit is decided by comparing every coded byte, so the
/// value is exactly what decoding would give; the comparison takes the
/// same time wherever the bytes differ (a proxy's connection carries
/// several users' credentials). Bounded: [`MEMO_SLOTS`] strings of
/// [`MEMO_MIN`] to [`MEMO_MAX`] coded bytes; the one hit longest ago goes.
#[derive(Default)]
pub struct HuffmanMemo {
    slots: Vec<MemoSlot>,
    /// Counts lookups: a slot's `used` is the count when it was last hit.
    clock: u64,
}

struct MemoSlot {
    coded: Vec<u8>,
    plain: Vec<u8>,
    used: u64,
}

impl std::fmt::Debug for HuffmanMemo {
    // Not the strings: they may be credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HuffmanMemo").field("kept", &self.slots.len()).finish()
    }
}

/// Strings shorter than this (coded) are decoded: cheaper than a lookup,
/// and they are the fields that change per request (a range, a length).
pub const MEMO_MIN: usize = 24;
/// Longer strings are decoded and not kept: what a connection holds stays
/// small (credentials and paths are a few hundred bytes).
pub const MEMO_MAX: usize = 1024;
/// How many strings a memo keeps.
pub const MEMO_SLOTS: usize = 8;

impl HuffmanMemo {
    fn decode(&mut self, raw: &[u8]) -> Result<Vec<u8>, huffman::HuffmanError> {
        if !(MEMO_MIN..=MEMO_MAX).contains(&raw.len()) {
            let mut out = Vec::new();
            huffman::decode(raw, &mut out)?;
            return Ok(out);
        }
        self.clock += 1;
        // Every slot compared, each in time that does not depend on where
        // the bytes differ: how long a lookup takes says whether it hit
        // (as a QPACK dynamic table's would, RFC 9204 7.1), not which
        // string nor how much of one matched.
        let mut hit = None;
        for (i, m) in self.slots.iter().enumerate() {
            if m.coded.len() == raw.len() && constant_time_eq::constant_time_eq(&m.coded, raw) {
                hit = Some(i);
            }
        }
        if let Some(slot) = hit.map(|i| &mut self.slots[i]) {
            slot.used = self.clock;
            return Ok(slot.plain.clone());
        }
        let mut out = Vec::new();
        huffman::decode(raw, &mut out)?;
        let entry = MemoSlot { coded: raw.to_vec(), plain: out.clone(), used: self.clock };
        if self.slots.len() < MEMO_SLOTS {
            self.slots.push(entry);
        } else if let Some(oldest) = self.slots.iter_mut().min_by_key(|m| m.used) {
            *oldest = entry;
        }
        Ok(out)
    }
}

fn fail(reason: &'static str) -> H3Error {
    H3Error { code: H3Code::QpackDecompressionFailed, reason }
}

/// Reads an integer with an `n`-bit prefix (RFC 9204, 4.1.1) from the
/// start of `b`: the value and the bytes it took. At most 62 bits.
pub fn read_prefix_int(b: &[u8], n: u32) -> Result<(u64, usize), H3Error> {
    let first = *b.first().ok_or(fail("an integer is cut short"))?;
    let max = (1u64 << n) - 1;
    let mut v = u64::from(first) & max;
    if v < max {
        return Ok((v, 1));
    }
    let mut shift = 0u32;
    for (i, &byte) in b[1..].iter().enumerate() {
        if shift > 56 {
            return Err(fail("an integer is too large"));
        }
        v = v.checked_add(u64::from(byte & 0x7f) << shift).ok_or(fail("an integer is too large"))?;
        if byte & 0x80 == 0 {
            if v >= 1 << 62 {
                return Err(fail("an integer is too large"));
            }
            return Ok((v, i + 2));
        }
        shift += 7;
    }
    Err(fail("an integer is cut short"))
}

/// Appends `v` with an `n`-bit prefix, the prefix's other bits set to `flags`.
pub fn write_prefix_int(v: u64, n: u32, flags: u8, out: &mut Vec<u8>) {
    let max = (1u64 << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = v - max;
    while rest >= 0x80 {
        out.push((rest as u8 & 0x7f) | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// A string literal whose length has an `n`-bit prefix after the H bit.
fn read_string<'a>(b: &'a [u8], n: u32, budget: &mut u64, memo: &mut HuffmanMemo) -> Result<(Cow<'a, [u8]>, usize), H3Error> {
    let first = *b.first().ok_or(fail("a string is cut short"))?;
    let huffman = first & (1 << n) != 0;
    let (len, used) = read_prefix_int(b, n)?;
    let end = (used as u64).checked_add(len).filter(|&e| e <= b.len() as u64).ok_or(fail("a string is cut short"))? as usize;
    let raw = &b[used..end];
    if huffman {
        // A Huffman string decodes to at most 8/5 of its length: refused
        // before the work if even its shortest reading is over the budget.
        if raw.len() as u64 > *budget {
            return Err(H3Error::too_large());
        }
        let out = memo.decode(raw).map_err(|_| fail("a Huffman string is malformed"))?;
        take(budget, out.len() as u64)?;
        Ok((Cow::Owned(out), end))
    } else {
        take(budget, raw.len() as u64)?;
        Ok((Cow::Borrowed(raw), end))
    }
}

fn take(budget: &mut u64, n: u64) -> Result<(), H3Error> {
    *budget = budget.checked_sub(n).ok_or(H3Error::too_large())?;
    Ok(())
}

fn static_entry(i: u64) -> Result<(&'static str, &'static str), H3Error> {
    STATIC_TABLE.get(i as usize).copied().ok_or(fail("a static table index is out of range"))
}

/// Decodes a field section (a HEADERS frame's payload), at most `max_size`
/// bytes by [`FIELD_OVERHEAD`]'s count (past it: [`H3Error::too_large`],
/// answered 431) and at most `max_fields` lines (past it:
/// [`H3Error::too_many_fields`], answered 431 too).
pub fn decode_section(b: &[u8], max_size: u64, max_fields: usize) -> Result<Vec<Field<'_>>, H3Error> {
    decode_section_memo(b, max_size, max_fields, &mut HuffmanMemo::default())
}

/// [`decode_section`], long Huffman strings looked up in `memo` first.
pub fn decode_section_memo<'a>(b: &'a [u8], max_size: u64, max_fields: usize, memo: &mut HuffmanMemo) -> Result<Vec<Field<'a>>, H3Error> {
    let (insert_count, a) = read_prefix_int(b, 8)?;
    if insert_count != 0 {
        return Err(fail("a field section refers to the dynamic table, whose capacity is zero"));
    }
    let (_delta_base, c) = read_prefix_int(&b[a..], 7)?;
    let mut at = a + c;
    let mut budget = max_size;
    let mut fields = Vec::new();
    while at < b.len() {
        if fields.len() >= max_fields {
            return Err(H3Error::too_many_fields());
        }
        take(&mut budget, FIELD_OVERHEAD)?;
        let rest = &b[at..];
        let first = rest[0];
        let field = if first & 0x80 != 0 {
            // Indexed field line.
            if first & 0x40 == 0 {
                return Err(fail("a field line refers to the dynamic table"));
            }
            let (i, used) = read_prefix_int(rest, 6)?;
            let (name, value) = static_entry(i)?;
            take(&mut budget, (name.len() + value.len()) as u64)?;
            at += used;
            Field { name: Cow::Borrowed(name.as_bytes()), value: Cow::Borrowed(value.as_bytes()) }
        } else if first & 0x40 != 0 {
            // Literal field line with a name reference.
            if first & 0x10 == 0 {
                return Err(fail("a field line refers to the dynamic table"));
            }
            let (i, used) = read_prefix_int(rest, 4)?;
            let (name, _) = static_entry(i)?;
            take(&mut budget, name.len() as u64)?;
            let (value, end) = read_string(&rest[used..], 7, &mut budget, memo)?;
            at += used + end;
            Field { name: Cow::Borrowed(name.as_bytes()), value }
        } else if first & 0x20 != 0 {
            // Literal field line with a literal name.
            let (name, end) = read_string(rest, 3, &mut budget, memo)?;
            let (value, end2) = read_string(&rest[end..], 7, &mut budget, memo)?;
            at += end + end2;
            Field { name, value }
        } else {
            return Err(fail("a field line refers to the dynamic table (post-base)"));
        };
        fields.push(field);
    }
    Ok(fields)
}

/// Reads the complete instructions at the start of the client's QPACK
/// encoder stream (RFC 9204, 4.3): with a table capacity of zero, the only
/// one allowed is setting the capacity to zero, one byte. Returns the bytes
/// read (all of them, or an error).
pub fn read_encoder_stream(b: &[u8]) -> Result<usize, H3Error> {
    let bad = |reason| H3Error { code: H3Code::QpackEncoderStreamError, reason };
    // "Set Dynamic Table Capacity" (001 and a 5-bit prefix) of zero is one byte.
    match b.iter().find(|&&x| x != 0x20) {
        None => Ok(b.len()),
        Some(x) if x & 0xe0 == 0x20 => Err(bad("a table capacity above the zero allowed")),
        Some(_) => Err(bad("an insertion into a table of capacity zero")),
    }
}

/// Reads the complete instructions at the start of the client's QPACK
/// decoder stream (RFC 9204, 4.4). Stream Cancellations are let go (a
/// client with a table of its own sends one for each stream reset before
/// its end, so there is no cap on them); a Section Acknowledgment or an
/// Insert Count Increment is an error, as this server never refers to a
/// table. Returns the bytes read.
pub fn read_decoder_stream(b: &[u8]) -> Result<usize, H3Error> {
    let bad = |reason| H3Error { code: H3Code::QpackDecoderStreamError, reason };
    let mut at = 0;
    while let Some(&first) = b.get(at) {
        if first & 0x80 != 0 {
            return Err(bad("a Section Acknowledgment for a section that refers to no table"));
        }
        if first & 0x40 == 0 {
            return Err(bad("an Insert Count Increment past a table of capacity zero"));
        }
        let Some((_stream, used)) = read_prefix_int_partial(&b[at..], 6)? else { break };
        at += used;
    }
    Ok(at)
}

/// [`read_prefix_int`], but None when `b` ends before the integer does.
fn read_prefix_int_partial(b: &[u8], n: u32) -> Result<Option<(u64, usize)>, H3Error> {
    let complete = b.first().is_some_and(|&f| u64::from(f) & ((1 << n) - 1) < (1 << n) - 1) || b.iter().skip(1).any(|&x| x & 0x80 == 0);
    if !complete {
        // Even cut short, more than ten continuation bytes is over 62 bits.
        return if b.len() > 10 { Err(fail("an integer is too large")) } else { Ok(None) };
    }
    read_prefix_int(b, n).map(Some)
}

/// Where `name` first appears in the static table, and the index of the
/// entry with this very value if there is one.
fn find_static(name: &[u8], value: &[u8]) -> (Option<usize>, Option<usize>) {
    static BY_NAME: OnceLock<HashMap<&'static [u8], Vec<usize>>> = OnceLock::new();
    let by_name = BY_NAME.get_or_init(|| {
        let mut m: HashMap<&'static [u8], Vec<usize>> = HashMap::new();
        for (i, (n, _)) in STATIC_TABLE.iter().enumerate() {
            m.entry(n.as_bytes()).or_default().push(i);
        }
        m
    });
    match by_name.get(name) {
        None => (None, None),
        Some(all) => (all.first().copied(), all.iter().copied().find(|&i| STATIC_TABLE[i].1.as_bytes() == value)),
    }
}

/// Appends a response's field section: `:status`, then `fields` (names
/// in lower case, as HTTP/3 requires; the caller's header map keeps them so).
pub fn encode_response<'f>(status: u16, fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>, out: &mut Vec<u8>) {
    // Required Insert Count 0, Delta Base 0.
    out.extend_from_slice(&[0, 0]);
    let mut digits = [0u8; 3];
    let status = status.clamp(100, 999);
    digits[0] = b'0' + (status / 100) as u8;
    digits[1] = b'0' + (status / 10 % 10) as u8;
    digits[2] = b'0' + (status % 10) as u8;
    encode_field(b":status", &digits, out);
    for (name, value) in fields {
        encode_field(name, value, out);
    }
}

/// Appends a request's field section: the pseudo-fields of an `https`
/// request, then `fields` (names in lower case). What our own tools send
/// over raw QUIC streams (the hostile bench's attack clients); the server
/// decodes it as any client's.
pub fn encode_request<'f>(
    method: &[u8],
    authority: &[u8],
    path: &[u8],
    fields: impl IntoIterator<Item = (&'f [u8], &'f [u8])>,
    out: &mut Vec<u8>,
) {
    // Required Insert Count 0, Delta Base 0.
    out.extend_from_slice(&[0, 0]);
    encode_field(b":method", method, out);
    encode_field(b":scheme", b"https", out);
    encode_field(b":authority", authority, out);
    encode_field(b":path", path, out);
    for (name, value) in fields {
        encode_field(name, value, out);
    }
}

fn encode_field(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    match find_static(name, value) {
        (_, Some(i)) => write_prefix_int(i as u64, 6, 0xc0, out),
        (Some(i), None) => {
            write_prefix_int(i as u64, 4, 0x50, out);
            write_prefix_int(value.len() as u64, 7, 0, out);
            out.extend_from_slice(value);
        }
        (None, None) => {
            write_prefix_int(name.len() as u64, 3, 0x20, out);
            out.extend_from_slice(name);
            write_prefix_int(value.len() as u64, 7, 0, out);
            out.extend_from_slice(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(b: &[u8]) -> Vec<(String, String)> {
        decode_section(b, 16 << 10, 100)
            .unwrap()
            .into_iter()
            .map(|f| (String::from_utf8(f.name.into_owned()).unwrap(), String::from_utf8(f.value.into_owned()).unwrap()))
            .collect()
    }

    #[test]
    fn prefix_integers_round_trip_at_every_width() {
        for n in 1..=8 {
            for v in [0u64, 1, 30, 31, 32, 126, 127, 128, 254, 255, 256, 1337, 1 << 20, (1 << 62) - 1] {
                let mut out = Vec::new();
                write_prefix_int(v, n, 0, &mut out);
                assert_eq!(read_prefix_int(&out, n).unwrap(), (v, out.len()), "{v} in {n} bits");
            }
        }
        // RFC 7541, C.1.2: 1337 with a 5-bit prefix.
        assert_eq!(read_prefix_int(&[0x1f, 0x9a, 0x0a], 5).unwrap(), (1337, 3));
        assert!(read_prefix_int(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 8).is_err());
        assert!(read_prefix_int(&[0xff, 0x80], 8).is_err(), "cut short");
    }

    #[test]
    fn a_response_section_decodes_to_what_was_encoded() {
        let mut out = Vec::new();
        let f: [(&[u8], &[u8]); 4] =
            [(b"content-length", b"4096"), (b"content-type", b"text/plain"), (b"x-tranzcast-node", b"edge-1"), (b"cache-control", b"")];
        encode_response(206, f, &mut out);
        let got = fields(&out);
        assert_eq!(got[0], (":status".into(), "206".into()));
        assert_eq!(got[1], ("content-length".into(), "4096".into()));
        assert_eq!(got[2], ("content-type".into(), "text/plain".into()));
        assert_eq!(got[3], ("x-tranzcast-node".into(), "edge-1".into()));
        assert_eq!(got[4], ("cache-control".into(), String::new()));
        // Whole static entries are one byte each: 206 is index 65 (two bytes), text/plain 53.
        assert_eq!(&out[2..4], &[0xff, 0x02]);
        let mut s = Vec::new();
        encode_response(299, [], &mut s);
        assert_eq!(fields(&s)[0].1, "299");
    }

    #[test]
    fn a_request_section_decodes_to_what_was_encoded() {
        let mut b = Vec::new();
        let long = "x".repeat(300);
        encode_request(
            b"GET",
            b"localhost:443",
            b"/v1/blobs/ab",
            [(&b"range"[..], &b"bytes=0-4095"[..]), (b"x-long", long.as_bytes())],
            &mut b,
        );
        let got = fields(&b);
        let want = [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "localhost:443"),
            (":path", "/v1/blobs/ab"),
            ("range", "bytes=0-4095"),
            ("x-long", long.as_str()),
        ];
        assert_eq!(got, want.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>());
        // The method and scheme come from the static table (one byte each).
        assert_eq!(b[2] & 0xc0, 0xc0);
        assert_eq!(b[3] & 0xc0, 0xc0);
    }

    #[test]
    fn a_request_with_huffman_literals_decodes() {
        // :method GET (17), :scheme https (23), :path with a Huffman literal
        // "/index.html" by name reference to :path (1), authorization as a
        // literal name with a Huffman value.
        let mut b = vec![0, 0, 0xc0 | 17, 0xc0 | 23];
        let mut path = Vec::new();
        huffman::encode(b"/index.html", &mut path);
        b.push(0x51);
        write_prefix_int(path.len() as u64, 7, 0x80, &mut b);
        b.extend_from_slice(&path);
        let mut name = Vec::new();
        huffman::encode(b"authorization", &mut name);
        write_prefix_int(name.len() as u64, 3, 0x28, &mut b);
        b.extend_from_slice(&name);
        let mut value = Vec::new();
        huffman::encode(b"Tranzcast abc", &mut value);
        write_prefix_int(value.len() as u64, 7, 0x80, &mut b);
        b.extend_from_slice(&value);
        assert_eq!(
            fields(&b),
            [
                (":method".into(), "GET".into()),
                (":scheme".into(), "https".into()),
                (":path".into(), "/index.html".into()),
                ("authorization".into(), "Tranzcast abc".into())
            ]
        );
    }

    #[test]
    fn the_memo_gives_what_decoding_gives_and_stays_bounded() {
        let mut memo = HuffmanMemo::default();
        let section = |value: &str| {
            let mut b = vec![0, 0, 0x5f, 84 - 15]; // authorization (84) by name reference
            let mut v = Vec::new();
            huffman::encode(value.as_bytes(), &mut v);
            write_prefix_int(v.len() as u64, 7, 0x80, &mut b);
            b.extend_from_slice(&v);
            b
        };
        let long = |i: usize| format!("Tranzcast {i:04} {}", "abcdefghij".repeat(12));
        for round in 0..3 {
            for i in 0..(MEMO_SLOTS + 2) {
                let b = section(&long(i));
                let got = decode_section_memo(&b, 1 << 14, 100, &mut memo).unwrap();
                assert_eq!(got, decode_section(&b, 1 << 14, 100).unwrap(), "round {round}, value {i}");
                assert_eq!(&got[0].value[..], long(i).as_bytes());
            }
        }
        assert_eq!(memo.slots.len(), MEMO_SLOTS);
        // One coded byte changed is not a hit: the value follows the bytes.
        let mut b = section(&long(1));
        let _ = decode_section_memo(&b, 1 << 14, 100, &mut memo).unwrap();
        let last = b.len() - 2;
        b[last] ^= 0x10;
        assert_eq!(decode_section_memo(&b, 1 << 14, 100, &mut memo).ok(), decode_section(&b, 1 << 14, 100).ok());
        // A malformed string is refused whether or not it is remembered.
        let mut bad = vec![0, 0, 0x5f, 84 - 15];
        write_prefix_int(70, 7, 0x80, &mut bad);
        bad.extend(std::iter::repeat_n(0xffu8, 70));
        assert!(decode_section_memo(&bad, 1 << 14, 100, &mut memo).is_err());
        assert!(decode_section_memo(&bad, 1 << 14, 100, &mut memo).is_err());
    }

    #[test]
    fn the_memo_keeps_what_is_sent_again_and_nothing_too_long() {
        let mut memo = HuffmanMemo::default();
        let coded = |value: &str| {
            let mut v = Vec::new();
            huffman::encode(value.as_bytes(), &mut v);
            v
        };
        let kept = |memo: &HuffmanMemo, c: &[u8]| memo.slots.iter().any(|m| m.coded == c);
        // A credential sent with every request stays while paths churn
        // through the other slots.
        let credential = coded(&format!("Tranzcast {}", "k".repeat(300)));
        for i in 0..(MEMO_SLOTS * 5) {
            assert!(memo.decode(&credential).is_ok());
            let path = coded(&format!("/v1/blobs/{i:064x}"));
            assert!((MEMO_MIN..=MEMO_MAX).contains(&path.len()));
            assert_eq!(memo.decode(&path).unwrap(), format!("/v1/blobs/{i:064x}").as_bytes());
            assert!(kept(&memo, &credential), "after path {i}");
        }
        assert_eq!(memo.slots.len(), MEMO_SLOTS);
        // Short strings and strings past MEMO_MAX are decoded, not kept.
        let short = coded("bytes=4096-8191");
        assert!(short.len() < MEMO_MIN);
        let long = coded(&"x".repeat(MEMO_MAX * 2));
        for c in [&short, &long] {
            let mut want = Vec::new();
            huffman::decode(c, &mut want).unwrap();
            assert_eq!(memo.decode(c).unwrap(), want);
            assert!(!kept(&memo, c));
        }
        let held: usize = memo.slots.iter().map(|m| m.coded.len() + m.plain.len()).sum();
        assert!(held <= MEMO_SLOTS * (MEMO_MAX + MEMO_MAX * 8 / 5), "{held}");
    }

    #[test]
    fn qpack_streams_take_what_a_table_of_capacity_zero_allows() {
        // Encoder stream: capacity 0, any number of times, cut anywhere.
        assert_eq!(read_encoder_stream(&[0x20, 0x20]), Ok(2));
        assert_eq!(read_encoder_stream(&[]), Ok(0));
        assert_eq!(read_encoder_stream(&[0x3f]).unwrap_err().code, H3Code::QpackEncoderStreamError, "31 or more");
        assert_eq!(read_encoder_stream(&[0x21]).unwrap_err().code, H3Code::QpackEncoderStreamError);
        for insert in [0x80u8, 0x40, 0x00] {
            assert_eq!(read_encoder_stream(&[0x20, insert, 1]).unwrap_err().code, H3Code::QpackEncoderStreamError, "{insert:#x}");
        }
        // Decoder stream: Stream Cancellations, whole or cut short.
        let mut b = vec![0x40 | 4, 0x40 | 8];
        write_prefix_int(1000, 6, 0x40, &mut b);
        let whole = b.len();
        assert_eq!(read_decoder_stream(&b), Ok(whole));
        assert_eq!(read_decoder_stream(&b[..whole - 1]), Ok(2), "the cut instruction waits for its end");
        assert_eq!(read_decoder_stream(&[0x80 | 4]).unwrap_err().code, H3Code::QpackDecoderStreamError);
        assert_eq!(read_decoder_stream(&[0x01]).unwrap_err().code, H3Code::QpackDecoderStreamError);
        assert!(read_decoder_stream(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn dynamic_references_and_bad_indexes_are_refused() {
        for b in [
            &[1u8, 0][..],        // Required Insert Count 1
            &[0, 0, 0x80 | 3],    // indexed, dynamic
            &[0, 0, 0x40 | 3, 0], // name reference, dynamic
            &[0, 0, 0x10],        // indexed post-base
            &[0, 0, 0x00],        // literal with post-base name reference
            &[0, 0, 0xff, 0x30],  // static index 63 + 48 = 111: past the table
            &[0, 0, 0x51, 5, b'a'],
            &[0, 0, 0x51, 0x81, 0xff], // a Huffman value of EOS bits
            &[0],
        ] {
            assert!(decode_section(b, 1 << 14, 100).is_err(), "{b:?}");
        }
        assert_eq!(decode_section(&[0, 0], 1 << 14, 100).unwrap(), vec![]);
    }

    #[test]
    fn the_size_and_count_caps_hold_before_the_work() {
        let mut b = vec![0, 0];
        for _ in 0..10 {
            b.push(0xc0 | 17);
        }
        assert_eq!(decode_section(&b, 10 * (32 + 10), 100).unwrap().len(), 10);
        assert_eq!(decode_section(&b, 10 * (32 + 10) - 1, 100).unwrap_err(), H3Error::too_large());
        assert_eq!(decode_section(&b, 1 << 20, 9).unwrap_err(), H3Error::too_many_fields());
        // A literal value longer than the budget is refused, Huffman or not.
        let mut big = vec![0, 0, 0x51];
        write_prefix_int(5000, 7, 0x80, &mut big);
        big.extend(std::iter::repeat_n(0u8, 5000));
        assert_eq!(decode_section(&big, 4096, 100).unwrap_err(), H3Error::too_large());
    }
}

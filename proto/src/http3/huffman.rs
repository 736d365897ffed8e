//! The Huffman code of HPACK (RFC 7541, Appendix B), which QPACK uses for
//! string literals: a decoder that resolves up to two symbols (eleven bits)
//! per table lookup, and an encoder for tests and for peers' strings.
//!
//! The code is canonical (codes of one length are consecutive and follow
//! the symbols' order, each length's first code follows the last of the
//! length before), so it is fully given by each symbol's code length: the
//! table below is the RFC's "len in bits" column, and the codes are
//! rebuilt from it (a test checks them against the RFC's own examples).

use std::sync::OnceLock;

/// Each symbol's code length in bits: bytes 0 to 255, then EOS (256).
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28,
    28, // 0-31
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 32-63
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 64-95
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 96-127
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23,
    24, // 128-159
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22,
    23, // 160-191
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27,
    27, // 192-223
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27,
    26, // 224-255
    30, // EOS
];

const EOS: u16 = 256;
/// Bits looked at by one lookup of the fast table: the commonest
/// characters of URLs and tokens (digits, lower-case letters, `/`, `-`)
/// have codes of five or six bits, so most lookups resolve two symbols.
/// 2,048 entries of four bytes: the table stays in the first-level cache.
const FAST_BITS: u32 = 11;

/// Why a Huffman string was refused (RFC 7541, 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuffmanError {
    /// The EOS symbol inside the string.
    Eos,
    /// Padding longer than 7 bits, or not all ones.
    Padding,
}

struct Tables {
    /// Each symbol's code, right-aligned.
    codes: [u32; 257],
    /// Indexed by the next [`FAST_BITS`] bits: the symbols whose codes
    /// fit whole in them, packed by [`fast_entry`]; no symbol when the code
    /// starting there is longer.
    fast: Vec<u32>,
    /// Every code left-aligned in 32 bits with its length and symbol,
    /// ascending: the code a window starts with is the last one not above it.
    sorted: Vec<(u32, u8, u16)>,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut order: Vec<u16> = (0..=256).collect();
        order.sort_by_key(|&s| (LENGTHS[s as usize], s));
        let mut codes = [0u32; 257];
        let (mut code, mut len) = (0u32, LENGTHS[order[0] as usize]);
        for (i, &s) in order.iter().enumerate() {
            let l = LENGTHS[s as usize];
            if i > 0 {
                code = (code + 1) << (l - len);
            }
            len = l;
            codes[s as usize] = code;
        }
        // First one symbol per entry, (symbol, length), then a second
        // symbol wherever its code fits in the bits the first leaves.
        let mut one = vec![(0u16, 0u32); 1 << FAST_BITS];
        let mut sorted = Vec::with_capacity(257);
        for s in 0..=256u16 {
            let (c, l) = (codes[s as usize], LENGTHS[s as usize]);
            sorted.push((c << (32 - u32::from(l)), l, s));
            if u32::from(l) <= FAST_BITS {
                let shift = FAST_BITS - u32::from(l);
                let first = (c << shift) as usize;
                for e in &mut one[first..first + (1 << shift)] {
                    *e = (s, u32::from(l));
                }
            }
        }
        sorted.sort_unstable();
        let mask = (1usize << FAST_BITS) - 1;
        let fast = (0..1usize << FAST_BITS)
            .map(|i| match one[i] {
                (_, 0) => 0,
                (s1, l1) => match one[(i << l1) & mask] {
                    // EOS never fits: its code is thirty bits.
                    (s2, l2) if l2 != 0 && l1 + l2 <= FAST_BITS => fast_entry(&[s1 as u8, s2 as u8], l1 + l2),
                    _ => fast_entry(&[s1 as u8], l1),
                },
            })
            .collect();
        Tables { codes, fast, sorted }
    })
}

/// A fast-table entry: up to two symbols (bits 0-15), how many (bits
/// 16-17) and the bits their codes take (bits 18-22); zero for none.
const fn fast_entry(symbols: &[u8], bits: u32) -> u32 {
    let second = if symbols.len() > 1 { symbols[1] as u32 } else { 0 };
    symbols[0] as u32 | second << 8 | (symbols.len() as u32) << 16 | bits << 18
}

/// Decodes a Huffman-coded string, appending to `out`.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let t = tables();
    // The shortest code is five bits.
    out.reserve(input.len() * 8 / 5 + 1);
    // `buf` holds `have` unread bits from its top bit down; zeros below.
    let (mut buf, mut have) = (0u64, 0u32);
    let mut bytes = input.iter();
    loop {
        if have < 32 {
            while have <= 56 {
                match bytes.next() {
                    Some(&b) => {
                        buf |= u64::from(b) << (56 - have);
                        have += 8;
                    }
                    None => break,
                }
            }
            if have == 0 {
                return Ok(());
            }
        }
        let e = t.fast[(buf >> (64 - FAST_BITS)) as usize];
        let used = e >> 18;
        // Past the end the bits are zeros, not input: an entry reaching
        // there is decided one symbol at a time below.
        if used != 0 && used <= have {
            out.push(e as u8);
            if (e >> 16) & 3 == 2 {
                out.push((e >> 8) as u8);
            }
            buf <<= used;
            have -= used;
            continue;
        }
        // A code longer than the fast table's bits, or the string's end.
        let window = (buf >> 32) as u32;
        let i = t.sorted.partition_point(|&(c, _, _)| c <= window) - 1;
        let (len, sym) = (u32::from(t.sorted[i].1), t.sorted[i].2);
        if len > have {
            // What is left is padding: at most 7 bits, all ones.
            let ones = (1u64 << have) - 1;
            return if have <= 7 && buf >> (64 - have) == ones { Ok(()) } else { Err(HuffmanError::Padding) };
        }
        if sym == EOS {
            return Err(HuffmanError::Eos);
        }
        out.push(sym as u8);
        buf <<= len;
        have -= len;
    }
}

/// The length of `input` Huffman-coded, in bytes.
pub fn encoded_len(input: &[u8]) -> usize {
    let bits: usize = input.iter().map(|&b| usize::from(LENGTHS[b as usize])).sum();
    bits.div_ceil(8)
}

/// Appends `input` Huffman-coded, padded with ones.
pub fn encode(input: &[u8], out: &mut Vec<u8>) {
    let t = tables();
    let (mut acc, mut have) = (0u64, 0u32);
    for &b in input {
        let l = u32::from(LENGTHS[b as usize]);
        acc = (acc << l) | u64::from(t.codes[b as usize]);
        have += l;
        while have >= 8 {
            have -= 8;
            out.push((acc >> have) as u8);
        }
        acc &= (1u64 << have) - 1;
    }
    if have > 0 {
        let pad = 8 - have;
        out.push(((acc << pad) | ((1u64 << pad) - 1)) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn the_rfcs_examples_encode_and_decode() {
        // RFC 7541, C.4.1 to C.4.3 and C.6.1.
        for (text, coded) in [
            ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
            ("no-cache", "a8eb 1064 9cbf"),
            ("custom-key", "25a8 49e9 5ba9 7d7f"),
            ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
            ("302", "6402"),
            ("private", "aec3 771a 4b"),
            ("Mon, 21 Oct 2013 20:13:21 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"),
            ("https://www.example.com", "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"),
        ] {
            let mut out = Vec::new();
            encode(text.as_bytes(), &mut out);
            assert_eq!(out, hex(coded), "{text}");
            assert_eq!(encoded_len(text.as_bytes()), out.len());
            let mut back = Vec::new();
            decode(&out, &mut back).unwrap();
            assert_eq!(back, text.as_bytes());
        }
    }

    #[test]
    fn every_byte_value_round_trips_alone_and_together() {
        let all: Vec<u8> = (0..=255).collect();
        for s in all.iter().map(std::slice::from_ref).chain([&all[..]]) {
            let mut coded = Vec::new();
            encode(s, &mut coded);
            let mut back = Vec::new();
            decode(&coded, &mut back).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn the_code_is_complete_and_prefix_free() {
        // Kraft's sum is exactly one: no bit pattern decodes to nothing.
        let sum: u64 = LENGTHS.iter().map(|&l| 1u64 << (30 - u32::from(l))).sum();
        assert_eq!(sum, 1 << 30);
        assert_eq!(tables().codes[256], (1 << 30) - 1, "EOS is thirty ones");
    }

    #[test]
    fn bad_padding_and_eos_are_refused() {
        // "a" is 00011, then 3 padding bits: ones are fine, a zero is not.
        let mut out = Vec::new();
        assert_eq!(decode(&[0b0001_1111], &mut out), Ok(()));
        assert_eq!(out, b"a");
        assert_eq!(decode(&[0b0001_1011], &mut Vec::new()), Err(HuffmanError::Padding));
        // Eight or more bits of ones is EOS's prefix taken as padding: refused.
        assert_eq!(decode(&[0xff], &mut Vec::new()), Err(HuffmanError::Padding));
        assert_eq!(decode(&[0b0001_1111, 0xff], &mut Vec::new()), Err(HuffmanError::Padding));
        // EOS itself, then padding.
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff], &mut Vec::new()), Err(HuffmanError::Eos));
        assert_eq!(decode(&[], &mut Vec::new()), Ok(()));
    }

    /// Decoding one bit at a time, straight from RFC 7541 5.2: the fast
    /// decoder must give the same string or the same refusal.
    fn decode_bit_by_bit(input: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let by_code: std::collections::HashMap<(u32, u32), u16> =
            (0..=256u16).map(|s| ((tables().codes[s as usize], u32::from(LENGTHS[s as usize])), s)).collect();
        let (mut out, mut code, mut len) = (Vec::new(), 0u32, 0u32);
        for i in 0..input.len() * 8 {
            code = code << 1 | u32::from(input[i / 8] >> (7 - i % 8) & 1);
            len += 1;
            match by_code.get(&(code, len)) {
                Some(&EOS) => return Err(HuffmanError::Eos),
                Some(&s) => {
                    out.push(s as u8);
                    (code, len) = (0, 0);
                }
                None => {}
            }
        }
        if len > 7 || code != (1 << len) - 1 { Err(HuffmanError::Padding) } else { Ok(out) }
    }

    #[test]
    fn the_fast_decoder_agrees_with_decoding_bit_by_bit() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut accepted, mut refused) = (0, 0);
        for n in 0..20_000 {
            // Coded strings of realistic text (URL and token characters, a
            // rare long code now and then), cut or flipped one time in two;
            // and plain random bytes.
            let bytes: Vec<u8> = if n % 3 == 2 {
                (0..next() % 48).map(|_| next() as u8).collect()
            } else {
                let alphabet = b"0123456789abcdef/-=.:ABCXYZ_~ \x00\xff";
                let text: Vec<u8> = (0..next() % 90)
                    .map(|_| if next() % 50 == 0 { next() as u8 } else { alphabet[(next() % alphabet.len() as u64) as usize] })
                    .collect();
                let mut coded = Vec::new();
                encode(&text, &mut coded);
                if n % 2 == 1 && !coded.is_empty() {
                    let i = (next() % coded.len() as u64) as usize;
                    if next() % 2 == 0 { coded.truncate(i) } else { coded[i] ^= 1 << (next() % 8) }
                }
                coded
            };
            let mut fast = Vec::new();
            let got = decode(&bytes, &mut fast).map(|()| fast);
            assert_eq!(got, decode_bit_by_bit(&bytes), "{bytes:02x?}");
            if got.is_ok() { accepted += 1 } else { refused += 1 }
        }
        assert!(accepted > 5_000 && refused > 5_000, "both outcomes covered: {accepted} accepted, {refused} refused");
    }

    #[test]
    fn hostile_strings_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..5000 {
            let len = n % 40;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let mut out = Vec::new();
            if decode(&bytes, &mut out).is_ok() {
                let mut again = Vec::new();
                encode(&out, &mut again);
                assert_eq!(again, bytes, "a string that decodes encodes back the same");
            }
        }
    }
}

//! The Huffman code of HPACK (RFC 7541, Appendix B), which QPACK uses for
//! string literals: a decoder that reads up to nine bits per table lookup,
//! and an encoder for tests and for peers' strings.
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
/// Bits resolved by one lookup of the fast table.
const FAST_BITS: u32 = 9;

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
    /// Indexed by the next [`FAST_BITS`] bits: (symbol, length) when a code
    /// of at most that length starts there, else length 0.
    fast: Vec<(u16, u8)>,
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
        let mut fast = vec![(0u16, 0u8); 1 << FAST_BITS];
        let mut sorted = Vec::with_capacity(257);
        for s in 0..=256u16 {
            let (c, l) = (codes[s as usize], LENGTHS[s as usize]);
            sorted.push((c << (32 - u32::from(l)), l, s));
            if u32::from(l) <= FAST_BITS {
                let shift = FAST_BITS - u32::from(l);
                let first = (c << shift) as usize;
                for e in &mut fast[first..first + (1 << shift)] {
                    *e = (s, l);
                }
            }
        }
        sorted.sort_unstable();
        Tables { codes, fast, sorted }
    })
}

/// Decodes a Huffman-coded string, appending to `out`.
pub fn decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let t = tables();
    out.reserve(input.len() + input.len() / 2);
    // `acc` holds `have` unread bits, the next one at bit have-1.
    let (mut acc, mut have) = (0u64, 0u32);
    let mut bytes = input.iter();
    loop {
        while have <= 56 {
            match bytes.next() {
                Some(&b) => {
                    acc = (acc << 8) | u64::from(b);
                    have += 8;
                }
                None => break,
            }
        }
        if have == 0 {
            return Ok(());
        }
        // The next 32 bits, left-aligned (zeros past the end).
        let window = if have >= 32 { (acc >> (have - 32)) as u32 } else { ((acc << (32 - have)) & 0xffff_ffff) as u32 };
        let (sym, len) = {
            let (s, l) = t.fast[(window >> (32 - FAST_BITS)) as usize];
            if l != 0 {
                (s, l)
            } else {
                let i = t.sorted.partition_point(|&(c, _, _)| c <= window) - 1;
                (t.sorted[i].2, t.sorted[i].1)
            }
        };
        let len = u32::from(len);
        if len > have {
            // What is left is padding: at most 7 bits, all ones.
            let mask = (1u64 << have) - 1;
            return if have <= 7 && acc & mask == mask { Ok(()) } else { Err(HuffmanError::Padding) };
        }
        if sym == EOS {
            return Err(HuffmanError::Eos);
        }
        out.push(sym as u8);
        have -= len;
        acc &= if have == 0 { 0 } else { (1u64 << have) - 1 };
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

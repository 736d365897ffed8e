//! The penalty box in the kernel: a classic BPF program, attached to a
//! listening TCP socket, that drops the packets of addresses serving the
//! abuse penalty before the kernel makes a connection of them.
//!
//! Why: an address caught abusing (a slowloris, an idle flood, a cancel
//! flood) is refused at `accept`, but only after the kernel has completed
//! its handshake, queued it, and the server has closed it; a flood that
//! reconnects at once makes that tens of thousands of handshakes and
//! closes a second, whose kernel work (softirqs, socket frees) runs ahead
//! of every other client's packets on the server's CPU. A dropped SYN
//! costs a lookup; the client's kernel waits a second before sending it
//! again, then two, then four: the flood slows itself. Addresses still in
//! the accept queue, and any past the program's size, are refused in user
//! space as before.
//!
//! Pure: the program is built here from the addresses; `server.rs` attaches
//! it (`SO_ATTACH_FILTER`, no privilege needed) whenever the box changes.
//! On a listening socket the filter sees the packets that would become
//! connections (SYNs, and the last ACK of a handshake); the connections
//! already accepted have sockets of their own, without the filter.

use crate::limits::ClientKey;

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
pub const MAX_INSNS: usize = 4096;

// linux/filter.h: class | size | mode (or operation | source).
/// `BPF_LD | BPF_W | BPF_ABS`
const LD_W_ABS: u16 = 0x20;
/// `BPF_LD | BPF_B | BPF_ABS`
pub(crate) const LD_B_ABS: u16 = 0x30;
/// `BPF_ALU | BPF_RSH | BPF_K`
const ALU_RSH_K: u16 = 0x74;
/// `BPF_JMP | BPF_JEQ | BPF_K`
const JMP_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JA`
const JMP_JA: u16 = 0x05;
/// `BPF_RET | BPF_K`
pub(crate) const RET_K: u16 = 0x06;
/// `SKF_NET_OFF`: loads relative to the network (IP) header, wherever the
/// packet's data starts (at the TCP header, for a TCP socket).
const NET: u32 = (-0x0010_0000i32) as u32;
/// Keep the whole packet.
const ACCEPT: u32 = u32::MAX;
const DROP: u32 = 0;

const HEAD: usize = 4;
const FIXED: usize = HEAD + 3;
const V4_EACH: usize = 2;
const V6_EACH: usize = 5;

/// A program dropping the packets from `keys` (an IPv4 address, or the
/// first 64 bits of an IPv6 one, as the penalty box counts them) and
/// keeping every other; with how many of `keys` it holds (the first ones,
/// up to the kernel's size limit). `None` when `keys` is empty (nothing to
/// attach).
pub fn drop_from(keys: &[ClientKey]) -> Option<(Vec<Insn>, usize)> {
    // The first keys that fit: the head, the IPv4 load, each check, each section's final accept.
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    let mut size = FIXED;
    for k in keys {
        let each = match k {
            ClientKey::V4(_) => V4_EACH,
            ClientKey::V6(_) => V6_EACH,
        };
        if size + each > MAX_INSNS {
            break;
        }
        size += each;
        match *k {
            ClientKey::V4(a) => v4.push(a),
            ClientKey::V6(p) => v6.push(p),
        }
    }
    let held = v4.len() + v6.len();
    if held == 0 {
        return None;
    }
    let i = |code, jt, jf, k| Insn { code, jt, jf, k };
    let v6_start = HEAD + 1 + v4.len() * V4_EACH + 1;
    let mut p = Vec::with_capacity(size);
    // The IP version, from the first byte's high nibble: 6 jumps to the IPv6 checks.
    p.push(i(LD_B_ABS, 0, 0, NET));
    p.push(i(ALU_RSH_K, 0, 0, 4));
    p.push(i(JMP_JEQ_K, 0, 1, 6));
    // `ja` takes a 32-bit offset (a conditional jump's is 8 bits).
    p.push(i(JMP_JA, 0, 0, (v6_start - HEAD) as u32));
    // IPv4: the source address is at 12.
    p.push(i(LD_W_ABS, 0, 0, NET + 12));
    for a in v4 {
        p.push(i(JMP_JEQ_K, 0, 1, a));
        p.push(i(RET_K, 0, 0, DROP));
    }
    p.push(i(RET_K, 0, 0, ACCEPT));
    debug_assert_eq!(p.len(), v6_start);
    // IPv6: the source address is at 8; its first 64 bits, two words.
    for pre in v6 {
        p.push(i(LD_W_ABS, 0, 0, NET + 8));
        p.push(i(JMP_JEQ_K, 0, 3, (pre >> 32) as u32));
        p.push(i(LD_W_ABS, 0, 0, NET + 12));
        p.push(i(JMP_JEQ_K, 0, 1, pre as u32));
        p.push(i(RET_K, 0, 0, DROP));
    }
    p.push(i(RET_K, 0, 0, ACCEPT));
    debug_assert_eq!(p.len(), size);
    Some((p, held))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// The kernel's reading of the instructions used here, over an IP
    /// header (`net`): true if the packet is kept. A jump or load out of
    /// bounds is a failed test, as the kernel would refuse the program.
    fn run(p: &[Insn], net: &[u8]) -> bool {
        let (mut a, mut pc) = (0u32, 0usize);
        let load = |k: u32, n: usize| -> u32 {
            let off = k.wrapping_sub(NET) as usize;
            let b = &net[off..off + n];
            b.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x))
        };
        loop {
            let x = p[pc];
            pc += 1;
            match x.code {
                LD_W_ABS => a = load(x.k, 4),
                LD_B_ABS => a = load(x.k, 1),
                ALU_RSH_K => a >>= x.k,
                JMP_JEQ_K => pc += usize::from(if a == x.k { x.jt } else { x.jf }),
                JMP_JA => pc += x.k as usize,
                RET_K => return x.k != 0,
                c => panic!("unexpected instruction {c:#x}"),
            }
            assert!(pc < p.len(), "ran off the end");
        }
    }

    fn header(src: IpAddr) -> Vec<u8> {
        match src {
            IpAddr::V4(v4) => {
                let mut h = vec![0u8; 20];
                h[0] = 0x45;
                h[12..16].copy_from_slice(&v4.octets());
                h
            }
            IpAddr::V6(v6) => {
                let mut h = vec![0u8; 40];
                h[0] = 0x60;
                h[8..24].copy_from_slice(&v6.octets());
                h
            }
        }
    }

    fn keeps(p: &[Insn], ip: &str) -> bool {
        run(p, &header(ip.parse().unwrap()))
    }

    #[test]
    fn drops_the_listed_addresses_and_keeps_every_other() {
        let listed: Vec<IpAddr> = vec![
            "127.0.1.7".parse().unwrap(),
            "203.0.113.9".parse().unwrap(),
            "2001:db8:1:2::5".parse().unwrap(),
            "2001:db8:9:9::1".parse().unwrap(),
        ];
        let keys: Vec<ClientKey> = listed.iter().map(|ip| ClientKey::of(*ip)).collect();
        let (p, held) = drop_from(&keys).unwrap();
        assert_eq!(held, 4);
        for ip in ["127.0.1.7", "203.0.113.9", "2001:db8:1:2::5", "2001:db8:1:2:ffff::9", "2001:db8:9:9::1"] {
            assert!(!keeps(&p, ip), "{ip} is penalised");
        }
        // Neighbours: another address, the same high or low word of a prefix.
        for ip in ["127.0.1.8", "203.0.113.10", "2001:db8:1:3::5", "2001:db9:1:2::5", "2001:db8:9:8::1", "::1"] {
            assert!(keeps(&p, ip), "{ip} is not");
        }
    }

    #[test]
    fn the_ipv6_section_is_reached_past_any_number_of_ipv4_checks() {
        // More IPv4 checks than a conditional jump's 255 could skip.
        let mut keys: Vec<ClientKey> = (0..1000u32).map(|i| ClientKey::V4(0x0a00_0000 + i)).collect();
        keys.push(ClientKey::of(IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap())));
        let (p, held) = drop_from(&keys).unwrap();
        assert_eq!(held, 1001);
        assert!(!keeps(&p, "2001:db8::77"));
        assert!(!keeps(&p, "10.0.3.231"), "the last IPv4 check");
        assert!(keeps(&p, "10.0.3.232"));
        assert!(keeps(&p, "2001:db8:0:1::1"));
    }

    #[test]
    fn the_program_fits_the_kernel_limit_and_holds_the_first_keys() {
        let keys: Vec<ClientKey> = (0..10_000u32).map(ClientKey::V4).collect();
        let (p, held) = drop_from(&keys).unwrap();
        assert!(p.len() <= MAX_INSNS);
        assert_eq!(held, (MAX_INSNS - FIXED) / V4_EACH);
        assert!(!keeps(&p, &Ipv4Addr::from(0u32).to_string()));
        assert!(keeps(&p, &Ipv4Addr::from(held as u32).to_string()), "past the limit: refused in user space");
        let v6: Vec<ClientKey> = (0..10_000u64).map(ClientKey::V6).collect();
        let (p, held) = drop_from(&v6).unwrap();
        assert!(p.len() <= MAX_INSNS && held == (MAX_INSNS - FIXED) / V6_EACH);
        assert!(drop_from(&[]).is_none());
    }
}

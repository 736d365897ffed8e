//! HTTP/3 packets steered to the QUIC endpoint that owns their connection.
//!
//! Why: a server runs one QUIC endpoint per core, each on a thread of its
//! own, all bound to the same UDP port (`SO_REUSEPORT`), so that a
//! connection's packets, its streams and its requests stay on one thread
//! (no cross-thread wake-ups) and receiving scales with cores (one quinn
//! endpoint demultiplexes every datagram on one task). The kernel's own
//! choice among the sockets hashes the client's address: a client whose
//! address changes (NAT rebinding, a phone moving from Wi-Fi to cellular)
//! would land on an endpoint that does not know its connection, and lose it.
//!
//! So every connection ID an endpoint issues says which endpoint it is
//! ([`EndpointCids`]), and a classic BPF program attached to the port's
//! socket group ([`program`]) sends each short-header packet to the
//! endpoint its destination ID names. Long-header packets (the handshake)
//! keep the kernel's hash: a client may not change address before its
//! handshake completes, and the endpoint that took its first Initial is
//! the one whose IDs the client uses afterwards.
//!
//! Two limits, both rare: a client whose address changes *during* its
//! handshake sends its Handshake packets (long headers) by the kernel's
//! hash, maybe to another endpoint, and its handshake fails (it retries);
//! and UDP GRO merges datagrams of one client address into one batch,
//! steered by the first, so a client that moved one connection onto a
//! socket it also uses for another connection to us may see that other
//! connection's packets dropped while they arrive merged. Steering long
//! headers by their destination ID would fix the first and make the second
//! common (a client's connections from one socket would spread over the
//! endpoints), so they keep the hash.
//!
//! What an on-path observer learns from an ID: which of the server's N
//! endpoints holds the connection (its first byte modulo N), as with any
//! stateless load balancer's connection IDs; the other seven bytes are
//! random or keyed-hash, unlinkable.
//!
//! Pure: the program and the IDs are built here; `server/endpoints.rs`
//! binds the sockets and attaches the program (no privilege needed).

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// Loads (`LD_B_ABS`) are relative to the UDP payload here: the kernel
// pulls the UDP header before running a reuseport program.
use crate::synfilter::{Insn, LD_B_ABS, RET_K};

/// Length of the connection IDs our endpoints issue.
pub const CID_LEN: usize = 8;

// linux/filter.h: class | size | mode (or operation | source).
/// `BPF_JMP | BPF_JSET | BPF_K`
const JMP_JSET_K: u16 = 0x45;
/// `BPF_ALU | BPF_MOD | BPF_K`
const ALU_MOD_K: u16 = 0x94;
/// `BPF_RET | BPF_A`
const RET_A: u16 = 0x16;
/// An index past the group: the kernel falls back to its hash of the address.
const KERNEL_HASH: u32 = u32::MAX;
/// QUIC's header form bit: set on long headers (Initial, Handshake, 0-RTT, Retry).
const LONG_HEADER: u32 = 0x80;

/// The reuseport program for `endpoints` sockets, bound in endpoint order:
/// a short-header datagram goes to the socket its destination connection
/// ID names (first byte modulo `endpoints`); a long-header one to the
/// kernel's hash of its address.
pub fn program(endpoints: u8) -> Vec<Insn> {
    let i = |code, jt, jf, k| Insn { code, jt, jf, k };
    vec![
        // The first byte's form bit is not header-protected.
        i(LD_B_ABS, 0, 0, 0),
        i(JMP_JSET_K, 3, 0, LONG_HEADER),
        // Short header: the destination ID follows the first byte.
        i(LD_B_ABS, 0, 0, 1),
        i(ALU_MOD_K, 0, 0, u32::from(endpoints.max(1))),
        i(RET_A, 0, 0, 0),
        i(RET_K, 0, 0, KERNEL_HASH),
    ]
}

/// The connection IDs of endpoint `index` of `endpoints`: the first byte
/// names the endpoint (modulo `endpoints`, its multiple random), four
/// random bytes, and three of a keyed hash of the first five, so that a
/// packet with an ID no endpoint of this server made is dropped unanswered
/// (no stateless reset for guessed or stale IDs of another endpoint).
#[derive(Debug, Clone)]
pub struct EndpointCids {
    index: u8,
    endpoints: u8,
    /// Shared by the server's endpoints, random per process.
    key: RandomState,
    /// Packets refused for naming an ID not this endpoint's.
    foreign: Arc<AtomicU64>,
}

impl EndpointCids {
    /// The IDs of endpoint `index` (below `endpoints`), checked with `key`.
    pub fn new(index: u8, endpoints: u8, key: RandomState) -> Self {
        let endpoints = endpoints.max(1);
        Self { index: index % endpoints, endpoints, key, foreign: Arc::default() }
    }

    /// Counts into `foreign` each packet refused for naming an ID not this endpoint's.
    #[must_use]
    pub fn counting(mut self, foreign: Arc<AtomicU64>) -> Self {
        self.foreign = foreign;
        self
    }

    fn tag(&self, head: &[u8]) -> [u8; 3] {
        let h = self.key.hash_one(head).to_le_bytes();
        [h[0], h[1], h[2]]
    }

    /// A fresh ID, its random parts from `random`.
    fn make(&self, random: [u8; 5]) -> [u8; CID_LEN] {
        let n = u16::from(self.endpoints);
        // The largest multiple of n that keeps the byte under 256.
        let spread = 256 / n;
        let first = u16::from(self.index) + n * (u16::from(random[0]) % spread);
        let mut id = [0u8; CID_LEN];
        id[0] = first as u8;
        id[1..5].copy_from_slice(&random[1..5]);
        let tag = self.tag(&id[..5]);
        id[5..].copy_from_slice(&tag);
        id
    }

    /// Whether `id` is one this endpoint could have issued.
    pub fn owns(&self, id: &[u8]) -> bool {
        id.len() == CID_LEN && id[0] % self.endpoints == self.index && self.tag(&id[..5]) == id[5..]
    }
}

impl quinn::ConnectionIdGenerator for EndpointCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&self.make(tranzcast_proto::random_bytes()))
    }

    fn validate(&self, cid: &quinn::ConnectionId) -> Result<(), quinn_proto::InvalidCid> {
        if self.owns(cid) {
            Ok(())
        } else {
            self.foreign.fetch_add(1, Ordering::Relaxed);
            Err(quinn_proto::InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's reading of the instructions used here, over a UDP
    /// payload: the socket index returned. A jump out of the program is a
    /// failed test; a load past the datagram returns 0, as the kernel does.
    fn run(p: &[Insn], payload: &[u8]) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let x = p[pc];
            pc += 1;
            match x.code {
                LD_B_ABS => match payload.get(x.k as usize) {
                    Some(b) => a = u32::from(*b),
                    None => return 0,
                },
                JMP_JSET_K => pc += usize::from(if a & x.k != 0 { x.jt } else { x.jf }),
                ALU_MOD_K => a %= x.k,
                RET_A => return a,
                RET_K => return x.k,
                c => panic!("unexpected instruction {c:#x}"),
            }
            assert!(pc < p.len(), "ran off the end");
        }
    }

    fn short_header(id: &[u8]) -> Vec<u8> {
        // Form bit clear, fixed bit set, the rest header-protected noise.
        let mut d = vec![0x5b];
        d.extend_from_slice(id);
        d.extend_from_slice(&[0xaa; 40]);
        d
    }

    #[test]
    fn every_short_header_packet_goes_to_the_endpoint_that_issued_its_id() {
        let key = RandomState::new();
        for n in [1u8, 2, 3, 4, 7, 16, 64] {
            let p = program(n);
            for index in 0..n {
                let cids = EndpointCids::new(index, n, key.clone());
                for r in 0..=255u8 {
                    let id = cids.make([r, r ^ 0x5a, 1, 2, r]);
                    assert!(cids.owns(&id), "n {n} index {index}");
                    assert_eq!(run(&p, &short_header(&id)), u32::from(index), "n {n} index {index} byte {r}");
                }
            }
        }
    }

    #[test]
    fn the_first_byte_spreads_over_its_whole_range_not_just_the_index() {
        let cids = EndpointCids::new(1, 4, RandomState::new());
        let firsts: std::collections::HashSet<u8> = (0..=255u8).map(|r| cids.make([r, 0, 0, 0, 0])[0]).collect();
        assert_eq!(firsts.len(), 64);
        assert!(firsts.iter().all(|b| b % 4 == 1));
    }

    #[test]
    fn long_header_packets_are_left_to_the_kernels_hash() {
        let p = program(4);
        // An Initial: form and fixed bits set, then the version.
        let mut initial = vec![0xc3, 0, 0, 0, 1, 8];
        initial.extend_from_slice(&[3; 8]);
        assert_eq!(run(&p, &initial), KERNEL_HASH);
        assert_eq!(run(&p, &[0x80]), KERNEL_HASH);
    }

    #[test]
    fn hostile_datagrams_pick_some_socket_and_never_fault() {
        let p = program(4);
        assert_eq!(run(&p, &[]), 0);
        assert_eq!(run(&p, &[0x40]), 0);
        for b in 0..=255u8 {
            assert!(run(&p, &[0x40, b]) < 4);
        }
    }

    #[test]
    fn an_id_from_another_endpoint_or_server_or_tampered_is_not_owned() {
        let key = RandomState::new();
        let (a, b) = (EndpointCids::new(0, 2, key.clone()), EndpointCids::new(1, 2, key));
        let id = a.make([9, 8, 7, 6, 5]);
        assert!(a.owns(&id) && !b.owns(&id));
        let other_server = EndpointCids::new(0, 2, RandomState::new());
        assert!(!other_server.owns(&id));
        let mut tampered = id;
        tampered[3] ^= 1;
        assert!(!a.owns(&tampered));
        assert!(!a.owns(&id[..7]));
    }

    #[test]
    fn refused_ids_are_counted() {
        use quinn::ConnectionIdGenerator as _;
        let n = Arc::new(AtomicU64::new(0));
        let mut a = EndpointCids::new(0, 2, RandomState::new()).counting(n.clone());
        let mine = a.generate_cid();
        assert!(a.validate(&mine).is_ok());
        assert!(a.validate(&quinn::ConnectionId::new(&[0; CID_LEN])).is_err());
        assert_eq!(n.load(Ordering::Relaxed), 1);
    }
}

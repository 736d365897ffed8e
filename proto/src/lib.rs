//! Tranzcast's wire and disk formats, as pure code: no I/O, no clock, no sockets.
//!
//! Every byte these types read or write is documented in `docs/formats.md`.
//! Ingest, origin, edge and client all speak them, so this crate stays small
//! and cheap to depend on (fuzz targets build it alone).
//!
//! - [`access`]: who may read or write blobs, from the `Authorization` header.
//! - [`api`]: the origin's JSON request bodies, read and checked.
//! - [`answers`]: the origin's JSON answers clients read (the play grant,
//!   its sources) and the error body of every refusal.
//! - [`envelope`]: the origin's secrets sealed under a key-encryption key.
//! - [`BlobAddress`]: the blake3 of a stored blob's bytes.
//! - [`TitleId`]: a title's short, fixed-width name.
//! - [`gateway`]: which requests the smart client's local gateway answers.
//! - [`http3`]: HTTP/3's frames, settings and request heads, and QPACK
//!   without a dynamic table, as the edge's server reads and writes them.
//! - [`frame`]: the segment frame (the patent's Fig. 11 header, brought up to date).
//! - [`keys`]: title keys, per-segment key and nonce derivation, seal and open.
//! - [`manifest`]: the signed list of a title's segments.
//! - [`ticket`]: play tickets (Fig. 9) and validation certificates (Fig. 10).
//! - [`member`]: the credential a node or an edge joins the cluster with.
//! - [`owner`]: the title a frame or manifest belongs to, from its first bytes.
//! - [`pulse`]: a source's answer to a pulse (health, load, segment bitmap)
//!   and the roles of the servers that answer it.
//! - [`revocations`]: the origin's list of revoked serials, read strictly.
//! - [`outboard`]: 16 KiB group chaining values, so a range of a blob can be
//!   verified against its address without the whole blob.

pub mod access;
mod address;
pub mod answers;
pub mod api;
pub mod envelope;
mod error;
pub mod fetch;
pub mod frame;
pub mod gateway;
pub mod http3;
pub mod json;
pub mod keys;
pub mod manifest;
pub mod member;
pub mod outboard;
pub mod owner;
pub mod playback;
pub mod pulse;
pub mod range;
pub mod revocations;
pub mod sizing;
pub mod ticket;
mod title;

pub use address::BlobAddress;
pub use error::ProtoError;
pub use title::TitleId;

/// Bytes from the operating system's CSPRNG, drawn from a per-thread pool
/// refilled [`RANDOM_POOL`] bytes at a time: a play takes four draws (two
/// serials, a key part, a log key), and a `getrandom` call each was 1.3% of
/// an origin's CPU under load; a draw now costs a `getpid` (the fork check
/// below), a far cheaper system call. Bytes handed out are wiped from the pool at
/// once, and the rest when the thread ends, so a key part stays in memory
/// only where its caller keeps it. A pool filled before a `fork` is
/// dropped in the child (the process id is checked on every draw), so
/// parent and child never hand out the same bytes.
///
/// # Panics
/// Only if the OS has no usable random source, in which case nothing in
/// Tranzcast can run safely anyway.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    let drew = N <= RANDOM_POOL / 4 && RANDOM.try_with(|pool| pool.borrow_mut().draw(&mut out)).is_ok();
    if !drew {
        os_random(&mut out);
    }
    out
}

/// Bytes a thread draws from the OS at once for [`random_bytes`].
pub const RANDOM_POOL: usize = 512;

/// A thread's pool of OS randomness: unused bytes, how many are used, and
/// the process it was filled in.
struct RandomPool {
    bytes: [u8; RANDOM_POOL],
    used: usize,
    pid: u32,
}

impl RandomPool {
    fn draw(&mut self, out: &mut [u8]) {
        let pid = std::process::id();
        if self.pid != pid || self.used + out.len() > RANDOM_POOL {
            os_random(&mut self.bytes);
            self.used = 0;
            self.pid = pid;
        }
        let taken = &mut self.bytes[self.used..self.used + out.len()];
        out.copy_from_slice(taken);
        taken.fill(0);
        self.used += out.len();
    }
}

impl Drop for RandomPool {
    fn drop(&mut self) {
        self.bytes.fill(0);
        // Kept from being optimised away as a dead store.
        std::hint::black_box(&mut self.bytes);
    }
}

thread_local! {
    /// Empty at first (all of it used): the first draw fills it.
    static RANDOM: std::cell::RefCell<RandomPool> = const { std::cell::RefCell::new(RandomPool { bytes: [0; RANDOM_POOL], used: RANDOM_POOL, pid: 0 }) };
}

fn os_random(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the OS random source failed");
}

/// `Debug` for a type that holds secrets: prints the fields it names (a
/// field followed by `: path` is shown through that function, such as
/// `hex::encode`), each field after `redact` as `<redacted>`, and `..` for
/// the rest, so a field added later stays out of logs until named.
#[macro_export]
macro_rules! debug_redacted {
    ($ty:ident { $($field:ident $(: $show:path)?),* $(,)? } $(redact { $($secret:ident),* $(,)? })?) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                let mut d = f.debug_struct(stringify!($ty));
                $( d.field(stringify!($field), &$crate::debug_redacted!(@show self.$field $(, $show)?)); )*
                $($( d.field(stringify!($secret), &"<redacted>"); )*)?
                d.finish_non_exhaustive()
            }
        }
    };
    (@show $v:expr) => { &$v };
    (@show $v:expr, $show:path) => { $show(&$v) };
}

/// Asserts that `accepts` refuses `signed` with any one of its bytes altered
/// (the lowest and the highest bit of each, in turn).
#[cfg(test)]
pub(crate) fn assert_every_flip_refused<const N: usize>(signed: [u8; N], accepts: impl Fn(&[u8]) -> bool) {
    for at in 0..N {
        for bit in [0x01u8, 0x80] {
            let mut b = signed;
            b[at] ^= bit;
            assert!(!accepts(&b), "flip {bit:#x} at {at} accepted");
        }
    }
}

pub(crate) fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}
pub(crate) fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod random_tests {
    use super::*;

    #[test]
    fn draws_differ_across_refills_and_leave_nothing_behind() {
        let mut seen = std::collections::HashSet::new();
        // Ten pools' worth of 16-byte draws: every one distinct, none zero.
        for _ in 0..RANDOM_POOL * 10 / 16 {
            let d: [u8; 16] = random_bytes();
            assert_ne!(d, [0; 16]);
            assert!(seen.insert(d), "a 16-byte draw repeated");
        }
        let key: [u8; 32] = random_bytes();
        assert_ne!(key, [0; 32]);
        RANDOM.with(|p| {
            let p = p.borrow();
            assert!(p.bytes[..p.used].iter().all(|&b| b == 0), "drawn bytes must be wiped from the pool");
            assert_eq!(p.pid, std::process::id());
        });
        // A pool from another process (as after a fork) is never drawn from.
        RANDOM.with(|p| {
            let mut p = p.borrow_mut();
            p.pid = p.pid.wrapping_add(1);
            p.used = 0;
            p.bytes = [0x5a; RANDOM_POOL];
        });
        let after_fork: [u8; 16] = random_bytes();
        assert_ne!(after_fork, [0x5a; 16], "a pool filled in another process was used");
        RANDOM.with(|p| assert_eq!(p.borrow().pid, std::process::id()));
        // Larger than a quarter pool: straight from the OS.
        let big: [u8; 4096] = random_bytes();
        assert!(big.iter().any(|&b| b != 0));
    }
}

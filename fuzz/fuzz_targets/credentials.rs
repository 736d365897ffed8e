//! The `Authorization` header paths of every server on hostile bytes: an
//! edge's credentials for reads and writes (`proto::access`), and the member
//! credential a node or an edge joins the origin with (`proto::member`).
//! Never panic; only the real cluster token is the cluster; nothing the
//! fuzzer writes verifies as a member credential, and every credential that
//! parses prints back to its own text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tranzcast_proto::access::{Credentials, authorize_write, credentials};
use tranzcast_proto::member::{MemberCredential, issue};

const CLUSTER: &str = "fuzz-cluster-token-0123456789";
const MEMBER_KEY: &[u8] = b"fuzz-member-key-0123456789-0123456789";

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    let vk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
    if let Ok(c) = credentials(Some(header), CLUSTER, &vk) {
        if c == Credentials::Cluster {
            assert_eq!(header.trim().strip_prefix("Bearer ").map(str::trim), Some(CLUSTER));
        }
    }
    if authorize_write(Some(header), CLUSTER, Some("push-token-fuzz-01")).is_ok() {
        let t = header.trim().strip_prefix("Bearer ").map(str::trim);
        assert!(t == Some(CLUSTER) || t == Some("push-token-fuzz-01"));
    }
    let text = header.strip_prefix("Bearer ").unwrap_or(header);
    if let Ok(c) = MemberCredential::parse(text) {
        // Canonical: the claims and the key mint the same text only if the MAC is right.
        let minted = issue(MEMBER_KEY, &c.name, c.role, c.issued_ms).expect("a parsed name is valid");
        assert_eq!(c.verify(MEMBER_KEY).is_ok(), minted == text);
    }
});

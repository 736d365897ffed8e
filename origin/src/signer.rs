//! The origin's token signer: Ed25519 through AWS-LC, which signs in about
//! 6 us where dalek takes 13 on the machines we measure (`bench/tickets.sh`
//! prints both). Every play signs twice (the presented ticket checked by
//! signing it again, `SignedToken::verify_own`, and the certificate), so
//! this is a third of a play's CPU. Both implement RFC 8032, whose
//! signatures are deterministic: the two give the same bytes for the same
//! key and message (tested below), so tickets signed before this signer
//! existed still pass `verify_own`, and everything that verifies (edges,
//! clients, nodes) keeps using dalek.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use ed25519_dalek::SigningKey;
use tranzcast_proto::ticket::TokenSigner;

use crate::OriginError;

/// The origin's signing key, loaded into AWS-LC (and kept in dalek, which
/// signs should AWS-LC ever fail to).
pub(crate) struct FastSigner {
    pair: Ed25519KeyPair,
    fallback: SigningKey,
}

impl FastSigner {
    /// The same key as `key`; refused (fails closed) unless AWS-LC derives
    /// the same public key from its seed and signs a probe with the very
    /// bytes dalek gives.
    pub(crate) fn new(key: &SigningKey) -> Result<Self, OriginError> {
        use ed25519_dalek::Signer;
        let public = key.verifying_key();
        let pair = Ed25519KeyPair::from_seed_and_public_key(key.as_bytes(), public.as_bytes())
            .map_err(|e| OriginError::Storage(format!("the signing key cannot be loaded into AWS-LC: {e}")))?;
        let probe = b"tranzcast: AWS-LC and dalek sign alike";
        if pair.public_key().as_ref() != public.as_bytes()
            || pair.try_sign(probe).ok().as_ref().map(|s| s.as_ref()) != Some(&key.sign(probe).to_bytes()[..])
        {
            return Err(OriginError::Storage("AWS-LC does not sign as dalek does with the signing key".into()));
        }
        Ok(Self { pair, fallback: key.clone() })
    }
}

impl TokenSigner for FastSigner {
    fn sign_token(&self, signed: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        match self.pair.try_sign(signed) {
            Ok(s) => {
                let mut out = [0u8; 64];
                out.copy_from_slice(s.as_ref());
                out
            }
            Err(_) => self.fallback.sign(signed).to_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;
    use tranzcast_proto::ticket::{Certificate, SignedToken};

    #[test]
    fn signs_exactly_as_dalek_does() {
        for i in 0..200u32 {
            let seed: [u8; 32] = tranzcast_proto::random_bytes();
            let key = SigningKey::from_bytes(&seed);
            let fast = FastSigner::new(&key).unwrap();
            // Lengths from empty to 298 bytes: past SHA-512's block boundaries
            // with the key's prefix and with R and A before the message.
            let msg: Vec<u8> = (0..(i as usize * 3 / 2)).map(|j| (j as u32 * 31 + i) as u8).collect();
            assert_eq!(fast.sign_token(&msg), key.sign(&msg).to_bytes(), "seed {} length {}", hex::encode(seed), msg.len());
        }
    }

    #[test]
    fn tokens_from_either_signer_pass_either_check() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let fast = FastSigner::new(&key).unwrap();
        let cert = Certificate {
            serial: [3; 16],
            customer: 7,
            created: 1_790_000_000,
            expires: 1_790_003_600,
            title: tranzcast_proto::TitleId::new("film").unwrap(),
            key_part: [4; 32],
        };
        let (slow, quick) = (cert.sign(&key), cert.sign(&fast));
        assert_eq!(slow, quick);
        let st = SignedToken::decode(&quick).unwrap();
        assert!(st.verify_own(&key).is_ok() && st.verify_own(&fast).is_ok() && st.verify(&key.verifying_key()).is_ok());
        let other = FastSigner::new(&SigningKey::from_bytes(&[10; 32])).unwrap();
        assert!(st.verify_own(&other).is_err());
    }
}

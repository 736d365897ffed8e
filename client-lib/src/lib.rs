//! The smart client: pulse every source, fetch segments in parallel from the
//! best, verify, decrypt, reassemble, seek, and serve peers.
//!
//! Built in steps (issue 5): today the pure source scoring
//! ([`scoring`]); the session, fetcher, peer service and `tranzcast play`
//! come next.

pub mod scoring;

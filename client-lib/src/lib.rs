//! The smart client: pulse every source, fetch segments in parallel from the
//! best, verify, decrypt, reassemble, seek, and serve peers.
//!
//! A shell until issue 5 fills it.

//! What a session tells its watchers while it plays (see `Session::events`).

/// Something that happened during playback (see [`crate::Session::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A segment arrived, verified, from a source.
    Segment {
        /// Its index.
        index: u64,
        /// The source's name.
        source: String,
        /// Plaintext bytes.
        bytes: u64,
    },
    /// A source failed (bad bytes, error, timeout) and is demoted.
    Demoted {
        /// The source's name.
        source: String,
        /// Why.
        reason: String,
    },
    /// A segment was asked of two (or three) sources at once; the first to
    /// have a quarter of it verified wins and fetches the rest, the others
    /// are cancelled.
    Race {
        /// The segment.
        index: u64,
        /// The sources, best first.
        between: Vec<String>,
    },
    /// A source ran slow mid-segment: the rest of it is fetched elsewhere.
    Switched {
        /// The segment.
        index: u64,
        /// The source left.
        source: String,
        /// Bytes of the segment verified when it was left.
        at: u64,
        /// Its rate then.
        reason: String,
    },
    /// A segment's fetch continued at a source from byte `at` (a range).
    Resumed {
        /// The segment.
        index: u64,
        /// The source that takes over.
        source: String,
        /// The first byte asked of it.
        at: u64,
    },
    /// End-game: an idle source took the tail of a segment still in flight
    /// at another, from byte `at`, so both end together.
    Split {
        /// The segment.
        index: u64,
        /// The source that fetches the tail.
        source: String,
        /// The first byte of the tail.
        at: u64,
    },
    /// Output waited for a segment that was not in hand yet (after playback started).
    Stall {
        /// The segment waited for.
        index: u64,
    },
}

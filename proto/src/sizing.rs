//! How big a segment is: about `seconds` of running time, rounded to a fixed size.

/// Seconds of media per segment unless asked otherwise.
pub const DEFAULT_SEGMENT_SECONDS: f64 = 4.0;
/// Assumed rate when the running time cannot be known: 5 Mbit/s, a typical
/// 1080p H.264 stream. Documented in `docs/formats.md`.
pub const DEFAULT_BYTES_PER_SECOND: u64 = 625_000;
/// Segment sizes are multiples of this.
pub const SEGMENT_ALIGN: u64 = 64 << 10;
/// Smallest segment: below this, per-request overhead dominates.
pub const MIN_SEGMENT: u64 = 256 << 10;
/// Largest segment: above this, time to first byte suffers.
pub const MAX_SEGMENT: u64 = 8 << 20;

/// The segment size for a title of `len` bytes and `running_time_ms` (0 when
/// unknown) so that one segment holds about `seconds` of it: the byte rate
/// times `seconds`, rounded up to 64 KiB, clamped to 256 KiB ..= 8 MiB.
pub fn segment_size_for(len: u64, running_time_ms: u64, seconds: f64) -> u32 {
    let rate = if running_time_ms > 0 && len > 0 {
        (len as f64 * 1000.0 / running_time_ms as f64).max(1.0)
    } else {
        DEFAULT_BYTES_PER_SECOND as f64
    };
    let seconds = if seconds.is_finite() && seconds > 0.0 { seconds } else { DEFAULT_SEGMENT_SECONDS };
    let raw = (rate * seconds).min(MAX_SEGMENT as f64) as u64;
    let aligned = raw.div_ceil(SEGMENT_ALIGN) * SEGMENT_ALIGN;
    aligned.clamp(MIN_SEGMENT, MAX_SEGMENT) as u32
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn follows_running_time() {
        // 60 s at 1 MB/s, 4 s segments: 4 MB rounded up to 64 KiB.
        let s = segment_size_for(60_000_000, 60_000, 4.0);
        assert_eq!(s as u64 % SEGMENT_ALIGN, 0);
        assert!((4_000_000..4_000_000 + SEGMENT_ALIGN).contains(&(s as u64)), "{s}");
        // Twice the seconds, twice the size.
        let d = segment_size_for(60_000_000, 60_000, 8.0);
        assert!((d as i64 - 2 * s as i64).abs() <= SEGMENT_ALIGN as i64);
    }

    #[test]
    fn clamps_and_defaults() {
        assert_eq!(segment_size_for(1000, 60_000, 4.0) as u64, MIN_SEGMENT);
        assert_eq!(segment_size_for(u64::MAX / 2, 1, 4.0) as u64, MAX_SEGMENT);
        let unknown = segment_size_for(10 << 30, 0, 4.0) as u64;
        assert_eq!(unknown, (DEFAULT_BYTES_PER_SECOND * 4).div_ceil(SEGMENT_ALIGN) * SEGMENT_ALIGN);
        assert_eq!(segment_size_for(0, 0, f64::NAN), segment_size_for(0, 0, DEFAULT_SEGMENT_SECONDS));
        assert_eq!(segment_size_for(5, 5, -1.0), segment_size_for(5, 5, DEFAULT_SEGMENT_SECONDS));
    }
}

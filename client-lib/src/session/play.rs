//! Playing a whole title in order: the scheduler decides (the first
//! segment raced, then `parallel` at once, the end-game split, the order);
//! this writes the plaintext out as the segments come.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::driver::Played;
use super::{LOCAL, PlayReport, Session};
use crate::ClientError;

/// The index a segment read from this client's own store is reported with.
const FROM_LOCAL: usize = usize::MAX;

/// Stops the scheduler's playback when `play_to` ends or is dropped.
struct StopPlay<'a>(&'a Session);

impl Drop for StopPlay<'_> {
    fn drop(&mut self) {
        self.0.core.stop_play();
    }
}

impl Session {
    /// Plays the whole title into `out`: pulses, races the first segment,
    /// and once the race is decided fetches `parallel` segments at once
    /// (out of order) from the other sources too; writes them in order.
    pub async fn play_to<W: AsyncWrite + Unpin>(self: &Arc<Self>, out: &mut W) -> Result<PlayReport, ClientError> {
        let started = Instant::now();
        // The first segment's outboard comes with the first pulse, while the
        // links are still idle: asked with the raced bodies, it queued behind
        // hundreds of KB of them (in 2 runs of 3 in bench/multisource.sh it
        // came 46-57 ms after the node sent it), every racer's groups waited
        // unverified meanwhile, and the race went to whichever link's queue
        // happened to empty first.
        tokio::join!(self.core.pulse(), self.core.prefetch_outboard(0));
        let n = self.manifest.segments.len() as u64;
        let mut report = PlayReport::default();
        // Segments in this client's own store (pre-cast, or played before) are not fetched.
        let held = self.held().await;
        let mut rx = self.core.play(held)?;
        let _stop = StopPlay(self);
        for next in 0..n {
            let (segment, frame, source) = match rx.recv().await {
                Some(Played::Segment { segment, frame, source }) => (segment, frame, source),
                Some(Played::Failed(e)) => return Err(e),
                None => return Err(ClientError::Network("the session's driver stopped".into())),
            };
            if segment != next {
                return Err(ClientError::Invalid(format!("segment {segment} came out in place of {next}")));
            }
            let plain = self.decrypt(segment, &frame).map_err(ClientError::Invalid)?;
            if segment == 0 {
                report.first_segment = started.elapsed();
            }
            let name = if source == FROM_LOCAL { LOCAL.to_string() } else { self.source_name(source) };
            if source == FROM_LOCAL {
                let _ = self.core.events.send(crate::Event::Segment { index: segment, source: LOCAL.into(), bytes: plain.len() as u64 });
            } else {
                self.keep(frame);
            }
            *report.by_source.entry(name).or_default() += plain.len() as u64;
            out.write_all(&plain).await?;
            report.bytes += plain.len() as u64;
        }
        out.flush().await?;
        report.demoted = self.core.demoted();
        Ok(report)
    }

    /// The frames this client's own store holds, by segment.
    async fn held(&self) -> BTreeMap<u64, (Bytes, usize)> {
        let Some(local) = self.local.clone() else { return BTreeMap::new() };
        let addrs = self.manifest.segments.clone();
        tokio::task::spawn_blocking(move || {
            addrs.iter().enumerate().filter_map(|(i, a)| local.local_blob(a).map(|f| (i as u64, (f, FROM_LOCAL)))).collect()
        })
        .await
        .unwrap_or_default()
    }
}

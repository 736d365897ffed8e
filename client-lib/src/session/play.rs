//! Playing a whole title in order: pulses, the first segment raced,
//! then `parallel` segments at once from every source, the end-game split,
//! the plaintext written in order.

#![allow(clippy::wildcard_imports)]

use super::*;

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
        tokio::join!(self.pulse(), self.prefetch_outboard(0));
        // Pulses go on during the playback (health, load, bitmaps change).
        // and every source's throughput is metered: bytes from it over each
        // interval it was busy with our requests throughout.
        self.metered.store(true, std::sync::atomic::Ordering::Relaxed);
        let me = Arc::downgrade(self);
        let pulses = tokio::spawn(async move {
            let mut last_pulse = Instant::now();
            let mut last: Vec<(bool, u64)> = Vec::new();
            let mut tick = tokio::time::interval(METER_EVERY);
            loop {
                tick.tick().await;
                let Some(s) = me.upgrade() else { break };
                if let Ok(mut views) = s.views.lock() {
                    let now = Instant::now();
                    last.resize(views.len(), (false, 0));
                    tracing::trace!(received = ?views.iter().zip(last.iter()).map(|(v, (_, r))| v.received.saturating_sub(*r)).collect::<Vec<_>>(),
                        in_flight = ?views.iter().map(|v| v.ours_in_flight).collect::<Vec<_>>(), "meter");
                    for (v, (was_busy, received)) in views.iter_mut().zip(last.iter_mut()) {
                        let busy = v.ours_in_flight > 0;
                        // Busy throughout and nothing came: for a source that
                        // has been delivering, that is a sample too (a stalled
                        // link, or one still carrying bytes of requests we
                        // cancelled), or the estimate would stay at what it did
                        // before it stalled. It never seeds an estimate: a
                        // source not yet measured may just not have started
                        // (a first byte late under load, a parent's miss).
                        if *was_busy && busy && (v.received > *received || v.measured().is_some()) {
                            v.record_interval(v.received.saturating_sub(*received), METER_EVERY.as_secs_f64(), now);
                        }
                        (*was_busy, *received) = (busy, v.received);
                    }
                }
                if last_pulse.elapsed() >= PULSE_EVERY {
                    last_pulse = Instant::now();
                    let s2 = s.clone();
                    tokio::spawn(async move { s2.pulse().await });
                }
            }
        });
        let _stop_pulses = AbortOnDrop(pulses);
        let n = self.manifest.segments.len() as u64;
        let mut report = PlayReport::default();
        if n == 0 {
            out.flush().await?;
            return Ok(report);
        }
        // The first segment decides the start-up time: raced, and the window
        // starts only once the race is decided, on the other sources (the
        // winner's is reserved for the first segment until it is in).
        let mut first = std::pin::pin!(self.segment_raced(0));
        let mut first_done = false;
        let mut pending: BTreeMap<u64, Bytes> = BTreeMap::new();
        {
            let mut reserved = self.reserved.subscribe();
            tokio::select! {
                r = &mut first => {
                    first_done = true;
                    let (plain, source) = r?;
                    report.first_segment = started.elapsed();
                    *report.by_source.entry(source).or_default() += plain.len() as u64;
                    pending.insert(0, plain);
                }
                _ = reserved.wait_for(Option::is_some) => {}
            }
        }
        let mut fetches = futures_util::stream::iter(1..n)
            .map(|i| {
                let me = self.clone();
                if i + 1 == n {
                    self.endgame.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                async move { (i, me.segment(i).await) }
            })
            .buffer_unordered(self.parallel);
        let mut next = 0u64;
        let mut fetches_done = false;
        // End-game helpers: idle sources fetching the tails of the last segments.
        let mut shares = futures_util::stream::FuturesUnordered::new();
        let mut helping: Vec<usize> = Vec::new();
        let mut share_check = tokio::time::interval(SHARE_CHECK);
        share_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Some(p) = pending.remove(&next) {
                out.write_all(&p).await?;
                report.bytes += p.len() as u64;
                next += 1;
            }
            self.playhead.store(next, std::sync::atomic::Ordering::Relaxed);
            let (i, r) = tokio::select! {
                r = &mut first, if !first_done => {
                    first_done = true;
                    report.first_segment = started.elapsed();
                    (0, r)
                }
                f = fetches.next(), if !fetches_done => match f {
                    Some(f) => f,
                    None if first_done => break,
                    None => {
                        fetches_done = true;
                        continue;
                    }
                },
                Some(helper) = shares.next(), if !shares.is_empty() => {
                    helping.retain(|&h| h != helper);
                    continue;
                }
                // (Checked from the start: the flag is set while `fetches` is polled.)
                _ = share_check.tick() => {
                    if !self.endgame.load(std::sync::atomic::Ordering::Relaxed) {
                        continue;
                    }
                    for (helper, fut) in self.plan_shares(&helping) {
                        helping.push(helper);
                        shares.push(fut);
                    }
                    continue;
                }
            };
            let (plain, source) = r?;
            *report.by_source.entry(source).or_default() += plain.len() as u64;
            if first_done && fetches_done {
                pending.insert(i, plain);
                break;
            }
            // (Before the first segment, playback has not started: no stall.)
            if first_done && i != next && !pending.contains_key(&next) {
                let _ = self.events.send(Event::Stall { index: next });
            }
            pending.insert(i, plain);
        }
        while let Some(p) = pending.remove(&next) {
            out.write_all(&p).await?;
            report.bytes += p.len() as u64;
            next += 1;
        }
        out.flush().await?;
        report.demoted = self.views.lock().map(|v| v.iter().filter(|s| s.demoted).map(|s| s.name.clone()).collect()).unwrap_or_default();
        Ok(report)
    }
}

/// Aborts a background task when dropped (the playback ended or failed).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

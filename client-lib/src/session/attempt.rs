//! One try at one source: the outboard first, the bytes verified per 16
//! KiB group as they arrive, resumed by range; a slow source left for a
//! faster one, a liar demoted (the transfer loop).

#![allow(clippy::wildcard_imports)]

use super::*;

impl Session {
    /// One try at one source, for what of the segment is still missing; the
    /// outcome is recorded in the source's view (a lie or an error demotes it,
    /// a 404 clears its bitmap bit, a slow transfer teaches its throughput).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn try_source(
        &self,
        choice: &scoring::Ranked,
        i: u64,
        idx: usize,
        addr: &tranzcast_proto::BlobAddress,
        patience: u32,
        t: &mut Transfer,
        tried: &[usize],
    ) -> Result<(), String> {
        let source = &self.sources[choice.index];
        let from = t.verifier.as_ref().map_or(0, GroupVerifier::verified);
        if from > 0 {
            let _ = self.events.send(Event::Resumed { index: i, source: source.name.clone(), at: from });
        }
        let r = self.attempt(choice, idx, addr, patience, t, tried).await;
        if r.is_err()
            && let Some(p) = &t.piece
        {
            // Nothing moves it now: until another source takes over, the
            // end-game must not plan with the rate of the one just left.
            p.lock().rate = None;
        }
        match r {
            Ok(()) => Ok(()),
            Err(Miss::NotThere) => {
                // Not a fault: it does not hold this one (a peer, or a stale bitmap).
                self.with_view(choice.index, |v| {
                    if let Some(h) = v.holds.as_mut().and_then(|h| h.get_mut(idx)) {
                        *h = false;
                    }
                });
                Err(format!("{}: {NOT_THERE}", source.name))
            }
            Err(Miss::Slow(why)) => {
                tracing::debug!(source = %source.name, segment = i, %why, "slow source left mid-segment");
                let at = t.verifier.as_ref().map_or(0, GroupVerifier::verified);
                let _ = self.events.send(Event::Switched { index: i, source: source.name.clone(), at, reason: why.clone() });
                Err(format!("{}: {why}", source.name))
            }
            Err(Miss::Failed(e)) => {
                tracing::warn!(source = %source.name, segment = i, error = %e, "source demoted");
                let _ = self.events.send(Event::Demoted { source: source.name.clone(), reason: e.clone() });
                self.with_view(choice.index, |v| v.demoted = true);
                Err(format!("{}: {e}", source.name))
            }
        }
    }

    /// Fetches the rest of a segment from one source: its outboard (with the
    /// body, in parallel) when none is in hand yet, then the body from the
    /// first unverified byte, each 16 KiB group verified as it arrives. Left
    /// for a better source when it runs slow (see [`scoring::should_switch`]).
    pub(super) async fn attempt(
        &self,
        choice: &scoring::Ranked,
        idx: usize,
        addr: &tranzcast_proto::BlobAddress,
        patience: u32,
        t: &mut Transfer,
        tried: &[usize],
    ) -> Result<(), Miss> {
        let source = &self.sources[choice.index];
        let (measured, rtt, answer, sharing_at_choice) = self
            .views
            .lock()
            .ok()
            .and_then(|v| v.get(choice.index).map(|s| (s.measured().is_some(), s.rtt, s.answer, s.ours_in_flight + 1)))
            .unwrap_or((false, None, None, 1));
        let mut progress = Outstanding::new(self, choice.index, t.race.is_none());
        if t.race.is_none() {
            // A race's winner has its source to itself until the raced segment is in.
            let mut reserved = self.reserved.subscribe();
            let _ = reserved.wait_for(|r| *r != Some(choice.index)).await;
        }
        let asked = tokio::time::Instant::now();
        let mut deadline = asked + scoring::timeout_for(choice.expected_secs, measured) * patience;
        // A source that does not answer at all is given up on much sooner.
        let answer_by = deadline.min(asked + scoring::answer_timeout(rtt, answer) * patience);
        let auth = format!("Tranzcast {}", self.certificate);
        if t.verifier.is_none()
            && let Some(v) = self.outboards.lock().ok().and_then(|k| k.get(addr).cloned())
        {
            t.data = Vec::with_capacity(usize::try_from(v.len()).unwrap_or(0));
            t.verifier = Some(v);
        }
        let from = t.verifier.as_ref().map_or(0, GroupVerifier::verified);
        let blob_url = format!("{}/v1/blobs/{addr}", source.https);
        let mut body_req = self.http.get(&blob_url).header(http::header::AUTHORIZATION, &auth);
        // A racer asks for the first quarter only (to the group boundary at
        // or after it, so the claim can be verified): once the race is
        // decided, a loser's link carries at most the rest of that range,
        // not the hundreds of KB a whole-segment request had in flight and
        // queued (105-198 ms of the two losers' links in bench/multisource.sh,
        // each delaying their next segment). The winner asks for the rest.
        let mut race_bound = t.race.as_ref().filter(|_| from == 0).map(|r| r.at.div_ceil(GROUP_LEN).max(1) * GROUP_LEN);
        if from > 0 {
            body_req = body_req.header(http::header::RANGE, format!("bytes={from}-"));
        } else if let Some(bound) = race_bound {
            body_req = body_req.header(http::header::RANGE, format!("bytes=0-{}", bound - 1));
        }
        // The outboard (with the body, in parallel), unless one is in hand.
        // On a shared connection its answer may come behind the first few
        // hundred KB of the body (a link's queue: up to 150 ms at 16 Mbit/s,
        // every group held unverified meanwhile), so racers share theirs:
        // the first valid one to arrive serves all (it is checked against
        // the blob's address, whoever sent it), and the race is decided by
        // the bodies, not by whose outboard came first.
        let own_outboard = t.verifier.is_none().then(|| {
            let req = self.http.get(format!("{}/v1/outboards/{addr}", source.https)).header(http::header::AUTHORIZATION, &auth).send();
            async move {
                let o = req.await.map_err(|e| Miss::Failed(e.to_string()))?;
                if o.status() == reqwest::StatusCode::NOT_FOUND {
                    return Err(Miss::NotThere);
                }
                if !o.status().is_success() {
                    return Err(Miss::Failed(format!("outboard: status {}", o.status())));
                }
                let mut o = o;
                let b = read_body(&mut o, tranzcast_proto::outboard::MAX_ENCODED, Duration::from_secs(5))
                    .await
                    .map_err(|e| Miss::Failed(e.to_string()))?;
                Outboard::decode(&b).and_then(|ob| GroupVerifier::new(*addr, ob)).map_err(|e| Miss::Failed(format!("bad outboard: {e}")))
            }
        });
        let race = t.race.clone();
        let outboard = async move {
            let own = own_outboard?;
            let Some(race) = race else { return Some(own.await) };
            let mut shared = race.outboard.subscribe();
            Some(tokio::select! {
                r = own => {
                    if let Ok(v) = &r {
                        race.offer_outboard(v);
                    }
                    r
                }
                Ok(v) = shared.wait_for(Option::is_some) => v.clone().ok_or_else(|| Miss::Failed("no outboard".into())),
            })
        };
        // About the size of what is asked (the frame adds a header and a tag).
        let remaining = t.verifier.as_ref().map_or(self.manifest.segment_plain_len(idx as u64), |v| v.len() - from);
        let racing = t.race.is_some();
        let answered = tokio::time::timeout_at(answer_by, async { tokio::join!(outboard, body_req.send()) });
        tokio::pin!(answered);
        let mut tick = tokio::time::interval_at(asked + SWITCH_CHECK, SWITCH_CHECK);
        let (outboard, body) = loop {
            tokio::select! {
                r = &mut answered => break r.map_err(|_| Miss::Failed("no answer in time".into()))?,
                _ = tick.tick() => {
                    // End-game: a source still silent while another, clearly
                    // faster, sits idle (see scoring::should_leave_unanswered).
                    if racing || !self.endgame.load(std::sync::atomic::Ordering::Relaxed) {
                        continue;
                    }
                    let mut exclude = tried.to_vec();
                    exclude.push(choice.index);
                    // Only an idle source counts: one busy with our other
                    // requests is no faster for this one than the end-game's
                    // split assumed (plan_shares gives tails to idle sources).
                    let alternative = self.alternative(idx, remaining, &exclude, true);
                    // Its share of the source: our other requests there take theirs.
                    let estimate = self.views.lock().ok().and_then(|v| {
                        v.get(choice.index).and_then(|s| s.measured().map(|m| m / f64::from(s.ours_in_flight.max(1))))
                    });
                    let waited = asked.elapsed().as_secs_f64();
                    if scoring::should_leave_unanswered(waited, remaining, estimate, alternative) {
                        return Err(Miss::Slow(format!("no answer in {:.0} ms with {remaining} bytes to send", waited * 1e3)));
                    }
                }
            }
        };
        self.with_view(choice.index, |v| v.record_answer(asked.elapsed()));
        tracing::trace!(source = %source.name, segment = idx, from, answer_ms = asked.elapsed().as_secs_f64() * 1e3, "answered");
        if let Some(v) = outboard {
            let v = v?;
            t.data = Vec::with_capacity(usize::try_from(v.len()).unwrap_or(0));
            t.verifier = Some(v);
        }
        let body = body.map_err(|e| Miss::Failed(e.to_string()))?;
        if body.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(Miss::NotThere);
        }
        let want = if from > 0 || race_bound.is_some() { reqwest::StatusCode::PARTIAL_CONTENT } else { reqwest::StatusCode::OK };
        // (A whole blob for a racer's range is fine: it is all checked.)
        if body.status() != want && !(race_bound.is_some() && body.status() == reqwest::StatusCode::OK) {
            return Err(Miss::Failed(format!("status {} (wanted {want})", body.status())));
        }
        if body.status() == reqwest::StatusCode::OK {
            race_bound = None;
        }
        let Transfer { verifier, data, piece, base: _, race } = t;
        let verifier = verifier.as_mut().ok_or_else(|| Miss::Failed("no outboard".into()))?;
        if let Some(p) = piece {
            let mut st = p.lock();
            st.verifier.get_or_insert_with(|| verifier.clone());
            st.verified = verifier.verified();
            st.rate = None;
        }
        // Where this transfer stops: the end, or a split point (end-game).
        let mut stop = piece.as_ref().and_then(|p| p.lock().split).unwrap_or(verifier.len());
        // The rate this source was chosen for (its expectation includes a round trip).
        let planned_rate = (verifier.len() - from) as f64 / choice.expected_secs.max(1e-3);
        let mut stream = body.bytes_stream();
        let mut tick = tokio::time::interval(SWITCH_CHECK);
        loop {
            tokio::select! {
                // Past its time: a source still sending is slow (not demoted), a silent one failed.
                () = tokio::time::sleep_until(deadline) => {
                    // Past its time but still coming, and no other source
                    // would clearly do the rest sooner: leaving would only
                    // waste what is already on its way (a link that slowed
                    // down still carries it), so it gets more time.
                    if let Some(rate) = progress.rate()
                        && progress.last_byte.is_some_and(|t| t.elapsed() < STILL_COMING)
                    {
                        let remaining = stop.saturating_sub(verifier.verified());
                        let mut exclude = tried.to_vec();
                        exclude.push(choice.index);
                        let alternative = self.alternative(idx, remaining, &exclude, false);
                        if !scoring::should_switch(rate, planned_rate, remaining, alternative, true) {
                            deadline = tokio::time::Instant::now() + scoring::timeout_for(remaining as f64 / rate, true);
                            continue;
                        }
                    }
                    verifier.abandon_pending();
                    return Err(if progress.got > 0 { Miss::Slow("over its time".into()) } else { Miss::Failed("timed out".into()) });
                }
                chunk = stream.next() => match chunk {
                    None if !verifier.is_complete() && race_bound.take().is_some() => {
                        // A racer's first quarter is in. A loser waits to be
                        // stopped by its race; the winner asks for the rest.
                        // (No winner: the range ended short of the quarter.)
                        match race.as_ref().and_then(|r| r.winner()) {
                            Some(w) if w == choice.index => {}
                            Some(_) => std::future::pending::<()>().await,
                            None => return Err(Miss::Failed(format!("its answer ended at byte {}", verifier.verified()))),
                        }
                        let from = verifier.verified();
                        let rest = self
                            .http
                            .get(&blob_url)
                            .header(http::header::AUTHORIZATION, &auth)
                            .header(http::header::RANGE, format!("bytes={from}-"))
                            .send();
                        let rest = tokio::time::timeout(scoring::answer_timeout(rtt, answer) * patience, rest)
                            .await
                            .map_err(|_| Miss::Failed("no answer in time".into()))?
                            .map_err(|e| Miss::Failed(e.to_string()))?;
                        if rest.status() != reqwest::StatusCode::PARTIAL_CONTENT {
                            return Err(Miss::Failed(format!("status {} (wanted 206)", rest.status())));
                        }
                        stream = rest.bytes_stream();
                    }
                    None => {
                        verifier.finish().map_err(|e| Miss::Failed(format!("bad bytes: {e}")))?;
                        break;
                    }
                    Some(Err(e)) => return Err(Miss::Failed(e.to_string())),
                    Some(Ok(c)) => {
                        progress.arrived(c.len());
                        // Only verified groups reach `data`: a lie is caught within 16 KiB.
                        verifier.push(&c, |_, group| data.extend_from_slice(group)).map_err(|e| {
                            Miss::Failed(format!("bad bytes after byte {}: {e}", verifier.verified()))
                        })?;
                        if let Some(p) = piece {
                            let mut st = p.lock();
                            st.verified = verifier.verified();
                            st.rate = progress.rate();
                            stop = st.split.unwrap_or(stop);
                        }
                        if verifier.is_complete() {
                            break;
                        }
                        if verifier.verified() >= stop {
                            // The rest is a helper's: what arrived past the split is dropped.
                            verifier.abandon_pending();
                            break;
                        }
                    }
                },
                _ = tick.tick() => {}
            }
            if let Some(race) = race {
                // The first to a quarter wins (a loser is stopped by its
                // race: see fetch_segment).
                race.received(choice.index, progress.got);
                if verifier.verified() >= race.at && race.winner().is_none() {
                    race.claim(self, choice.index);
                }
            }
            // Running slow (the source slowed down, or stalled)? Leave the
            // rest to a better source if one is clearly faster.
            if let Some(rate) = progress.rate() {
                let remaining = stop.saturating_sub(verifier.verified());
                let mut exclude = tried.to_vec();
                exclude.push(choice.index);
                let alternative = self.alternative(idx, remaining, &exclude, false);
                let endgame = self.endgame.load(std::sync::atomic::Ordering::Relaxed);
                let (sharing_now, estimate) =
                    self.views.lock().ok().and_then(|v| v.get(choice.index).map(|s| (s.ours_in_flight, s.measured()))).unwrap_or((1, None));
                // Chosen on a guess (unmeasured, or a race's seed): held to
                // its source's measured share once there is one.
                let planned = match estimate {
                    Some(e) if !measured => e / f64::from(sharing_now.max(1)),
                    _ => scoring::planned_share(planned_rate, sharing_at_choice, sharing_now),
                };
                if scoring::should_switch(rate, planned, remaining, alternative, endgame) {
                    verifier.abandon_pending();
                    self.with_view(choice.index, |v| v.record_slow(rate, v.ours_in_flight, Instant::now()));
                    return Err(Miss::Slow(format!("{:.2} MB/s with {remaining} bytes left", rate / 1e6)));
                }
            }
        }
        progress.done = true;
        tracing::debug!(source = %source.name, segment = idx, from, bytes = progress.got, secs = progress.started.elapsed().as_secs_f64(), "fetched");
        Ok(())
    }
}

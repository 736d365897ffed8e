//! A validation's read-decide-write on the embedded engine: under the
//! stripe lock of the ticket's order, one synced batch.

use super::*;

/// What a validation reads of the ticket database, under the ticket's
/// order's lock (the state engine builds it, the decision reads it).
#[derive(Debug, Clone, Default)]
pub struct TicketView {
    /// The presented ticket's record; its last grant cleared when that
    /// grant's certificate was revoked since (a retry gets no revoked session).
    pub record: Option<TicketRecord>,
    /// The ticket's order or customer has been revoked.
    pub lineage_revoked: bool,
    /// For a replaced ticket: its replacement's record.
    pub replacement: Option<TicketRecord>,
}

/// What a granted validation writes, in one durable step before the answer.
#[derive(Debug, Clone)]
pub struct GrantWrite {
    /// The presented ticket's serial and new record.
    pub presented: ([u8; 16], TicketRecord),
    /// The replacement ticket's serial and record, for a rental with plays left.
    pub replacement: Option<([u8; 16], TicketRecord)>,
    /// The certificate issued: its serial and expiry.
    pub certificate: ([u8; 16], u64),
    /// The log line.
    pub entry: ValidationEntry,
}

impl OriginState {
    /// Reads what validating `serial` needs (its record cleared of a revoked
    /// last grant, the lineage's revocation, its replacement).
    fn ticket_view(&self, serial: &[u8; 16]) -> Result<TicketView, OriginError> {
        let mut view = TicketView { record: self.ticket(serial)?, ..TicketView::default() };
        if let Some(r) = view.record.as_mut() {
            view.lineage_revoked = self.lineage_revoked(r)?;
            if let Some(last) = &r.last_grant
                && self.is_revoked(&last.certificate)?
            {
                r.last_grant = None;
            }
            if let crate::validation::TicketState::Replaced { by } = r.state {
                view.replacement = self.ticket(&by)?;
            }
        }
        Ok(view)
    }

    fn grant_batch(&self, w: &GrantWrite) -> Result<WriteBatch, OriginError> {
        let (cert, expires) = w.certificate;
        self.validation_batch(
            Some((&w.presented.0, &w.presented.1)),
            w.replacement.as_ref().map(|(s, r)| (s, r)),
            Some(IssuedCertificate { serial: &cert, ticket: &w.presented.0, order: w.presented.1.order, expires }),
            &w.entry,
        )
    }

    /// Reads what validating `serial` needs, lets `decide` choose, and
    /// writes its grant (if any) durably, all under the ticket's lock: two
    /// plays of one ticket, or a play and a revocation of its order, never
    /// interleave. `decide` runs once here (a shared engine may run it again
    /// after a conflict, so it must not act outside its answer). Blocking.
    pub fn validate<T>(&self, serial: &[u8; 16], mut decide: impl FnMut(TicketView) -> (T, Option<GrantWrite>)) -> Result<T, OriginError> {
        self.with_ticket_lock(serial, || {
            let (out, write) = decide(self.ticket_view(serial)?);
            if let Some(w) = write {
                self.write(self.grant_batch(&w)?)?;
            }
            Ok(out)
        })?
    }

    /// [`OriginState::validate`] for the async runtime: the stripe's lock is
    /// awaited, and the grant's batch joins the next group commit (one WAL
    /// sync for every play waiting then) and is awaited before the lock is
    /// let go and the answer given. No thread is held while waiting.
    pub async fn validate_async<T>(
        &self,
        serial: &[u8; 16],
        decide: impl FnOnce(TicketView) -> (T, Option<GrantWrite>),
    ) -> Result<T, OriginError> {
        let _held = self.stripes[self.ticket_stripe(serial)? % STRIPES].lock().await;
        let (out, write) = decide(self.ticket_view(serial)?);
        if let Some(w) = write {
            self.committer.commit(self.grant_batch(&w)?).await?;
        }
        Ok(out)
    }
}

/// Group commit in two stages, each on its own thread: the writer writes
/// every batch handed to it as it comes, without a sync, and passes it on;
/// the syncer syncs the write-ahead log once for every batch written since
/// its last sync, and only then tells each sender. A play is answered after
/// its batch is durable, a hundred plays in flight cost one fsync, not a
/// hundred, and the next group's writes go on while this group's sync
/// waits for the disk (a group's wait is one sync, not a write and a sync).
pub(crate) struct Committer {
    tx: Option<std::sync::mpsc::Sender<Pending>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Where to say a batch is durable.
type Done = tokio::sync::oneshot::Sender<Result<(), String>>;

/// A batch handed to the committer, and where to say it is durable.
type Pending = (WriteBatch, Done);

/// Batches answered by one sync at most.
const GROUP_MAX: usize = 512;

impl Committer {
    pub(crate) fn start(db: std::sync::Arc<DB>) -> Result<Self, OriginError> {
        let (tx, rx) = std::sync::mpsc::channel::<Pending>();
        // Written, not yet synced: a batch is sent here only after its write
        // returned, so the sync that takes it from here covers it.
        let (written_tx, written_rx) = std::sync::mpsc::channel::<Done>();
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(f).map_err(|e| OriginError::Storage(format!("{name} thread: {e}")))
        };
        let writer_db = db.clone();
        let writer = spawn(
            "tranzcast-commit-write",
            Box::new(move || {
                let mut unsynced = WriteOptions::default();
                unsynced.set_sync(false);
                while let Ok((batch, done)) = rx.recv() {
                    match writer_db.write_opt(batch, &unsynced) {
                        Ok(()) => {
                            if let Err(std::sync::mpsc::SendError(done)) = written_tx.send(done) {
                                let _ = done.send(Err("committer stopped".into()));
                            }
                        }
                        Err(e) => drop(done.send(Err(format!("write: {e}")))),
                    }
                }
                // Dropping `written_tx` here ends the syncer after its last group.
            }),
        )?;
        let syncer = spawn(
            "tranzcast-commit-sync",
            Box::new(move || {
                while let Ok(first) = written_rx.recv() {
                    let mut group = vec![first];
                    while group.len() < GROUP_MAX {
                        match written_rx.try_recv() {
                            Ok(next) => group.push(next),
                            Err(_) => break,
                        }
                    }
                    let synced = db.flush_wal(true).map_err(|e| format!("sync: {e}"));
                    for done in group {
                        let _ = done.send(synced.clone());
                    }
                }
            }),
        )?;
        Ok(Self { tx: Some(tx), threads: vec![writer, syncer] })
    }

    /// Hands `batch` to the next group; resolves once it is durable.
    pub(crate) async fn commit(&self, batch: WriteBatch) -> Result<(), OriginError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let tx = self.tx.as_ref().ok_or_else(|| OriginError::Storage("committer stopped".into()))?;
        tx.send((batch, done)).map_err(|_| OriginError::Storage("committer stopped".into()))?;
        wait.await.map_err(|_| OriginError::Storage("committer stopped".into()))?.map_err(OriginError::Storage)
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the channel ends the writer, and with it the syncer after its
        // last group; waiting for both lets the database close with this state (its lock released).
        drop(self.tx.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

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
    /// Reads what validating `serial` needs, lets `decide` choose, and
    /// writes its grant (if any) durably, all under the ticket's lock: two
    /// plays of one ticket, or a play and a revocation of its order, never
    /// interleave. `decide` runs once here (a shared engine may run it again after
    /// a conflict, so it must not act outside its answer).
    pub fn validate<T>(&self, serial: &[u8; 16], mut decide: impl FnMut(TicketView) -> (T, Option<GrantWrite>)) -> Result<T, OriginError> {
        self.with_ticket_lock(serial, || {
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
            let (out, write) = decide(view);
            if let Some(w) = write {
                let (cert, expires) = w.certificate;
                self.record_validation(
                    Some((&w.presented.0, &w.presented.1)),
                    w.replacement.as_ref().map(|(s, r)| (s, r)),
                    Some(IssuedCertificate { serial: &cert, ticket: &w.presented.0, order: w.presented.1.order, expires }),
                    &w.entry,
                )?;
            }
            Ok(out)
        })?
    }
}

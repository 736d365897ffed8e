//! Ticket validation (Fig. 13) as a pure decision: the presented ticket, the
//! ticket database's record of it, the title key and `now` in; a certificate,
//! a replacement ticket and the records to write out, or a refusal with its
//! reason. The caller holds the serial's lock and writes the outcome
//! atomically before answering.
//!
//! A ticket used up by a play (replaced, or spent by its last play) that
//! came with an idempotency key keeps what that play was granted; presented
//! again with the same key within the retry window (a retry after a lost
//! answer), it gets the same certificate and the same replacement (as long as
//! the replacement is unplayed), and no play is counted. Without the key a
//! ticket presented again is refused as before: a retry is told apart from a
//! second play by the key the client chose for its attempt, not by guessing.

use serde::{Deserialize, Serialize};
use tranzcast_proto::TitleId;
use tranzcast_proto::keys::TitleKey;
use tranzcast_proto::ticket::{Certificate, PlayTicket, UNLIMITED};

/// What the ticket database knows of one serial. `Debug` leaves K1 out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketRecord {
    /// Customer number.
    pub customer: u64,
    /// Title.
    pub title: String,
    /// Plays on this ticket ([`UNLIMITED`] for a purchase).
    pub plays: u32,
    /// Expiry, Unix seconds (0 = never).
    pub expires: u64,
    /// Created, Unix seconds.
    pub created: u64,
    /// The split value K1 (K2 = KM xor K1 is on the ticket).
    pub k1: [u8; 32],
    /// The order this ticket belongs to.
    pub order: u64,
    /// Where the ticket stands.
    pub state: TicketState,
    /// For a ticket used up by a play: what that play was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_grant: Option<LastGrant>,
}

/// What the play that used up a ticket was granted, to give it again on a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastGrant {
    /// The certificate's serial.
    pub certificate: [u8; 16],
    /// Granted at (the certificate's creation), Unix seconds.
    pub at: u64,
    /// The certificate's expiry.
    pub expires: u64,
    /// The blake3 of the idempotency key the play came with.
    pub request: [u8; 32],
}

tranzcast_proto::debug_redacted!(TicketRecord { customer, title, plays, expires, created, order, state, last_grant } redact { k1 });

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum TicketState {
    /// Can be played.
    Live,
    /// Its last play was used.
    Spent,
    /// Exchanged for a replacement with one play fewer.
    Replaced {
        /// The replacement's serial, hex.
        by: [u8; 16],
    },
    /// Revoked by the storefront.
    Revoked,
}

/// Why a ticket was refused. Each maps to a stable code and a reason for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a ticket, or not signed by this origin, or altered.
    Forged,
    /// Signed, but the serial is not in the database.
    UnknownSerial,
    /// All plays used.
    Spent,
    /// Already exchanged for a replacement: use the newer ticket.
    Replaced,
    /// Revoked by the storefront.
    Revoked,
    /// Past its expiry.
    Expired,
    /// Customer or title differ from the record.
    Mismatch,
    /// The title is not (or no longer) in the catalog.
    UnknownTitle,
}

impl Refusal {
    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Forged => "forged",
            Refusal::UnknownSerial => "unknown_ticket",
            Refusal::Spent => "spent",
            Refusal::Replaced => "replaced",
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
            Refusal::Mismatch => "mismatch",
            Refusal::UnknownTitle => "unknown_title",
        }
    }

    /// Reason for people.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Forged => "the ticket is not one this origin signed, or it was altered",
            Refusal::UnknownSerial => "the ticket's serial number is not on record",
            Refusal::Spent => "every play of this ticket has been used",
            Refusal::Replaced => "this ticket was already used and replaced; present the replacement ticket",
            Refusal::Revoked => "the ticket was revoked",
            Refusal::Expired => "the ticket has expired",
            Refusal::Mismatch => "the ticket's customer or title does not match the record",
            Refusal::UnknownTitle => "the title is not in the catalog",
        }
    }
}

/// A granted play: what to send back and what to write.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The validation certificate (holds K1).
    pub certificate: Certificate,
    /// The new state of the presented ticket.
    pub presented_state: TicketState,
    /// What to keep on the presented ticket's record (for a retry).
    pub presented_last_grant: Option<LastGrant>,
    /// For multi-play rentals: the replacement ticket and its record.
    pub replacement: Option<(PlayTicket, TicketRecord)>,
    /// The same answer as an earlier grant, given again on a retry: nothing
    /// to write, no play counted.
    pub repeated: bool,
}

/// Inputs that are not the ticket itself.
#[derive(Debug)]
pub struct Context<'a> {
    /// Unix seconds.
    pub now: u64,
    /// The title's key, `None` if the title is not in the catalog.
    pub title_key: Option<&'a TitleKey>,
    /// The title's running time in seconds (0 when unknown).
    pub running_time_s: u64,
    /// Added to the running time for the certificate's life.
    pub margin_s: u64,
    /// Random serial for a new certificate or ticket.
    pub fresh_serial: [u8; 16],
    /// Second random serial (the replacement's).
    pub fresh_serial_2: [u8; 16],
    /// Random K1 for the replacement ticket.
    pub fresh_k1: [u8; 32],
    /// The ticket's order or its customer has been revoked: every ticket
    /// of the order is refused, replacements issued after the revocation
    /// was asked for included.
    pub lineage_revoked: bool,
    /// The blake3 of the request's idempotency key, if it had one.
    pub request: Option<[u8; 32]>,
    /// How long a used-up ticket's grant is given again to its client.
    pub retry_window_s: u64,
    /// For a replaced ticket: its replacement's record.
    pub replacement: Option<&'a TicketRecord>,
}

/// Decides a validation. `ticket` has already passed its signature check.
pub fn decide(ticket: &PlayTicket, record: Option<&TicketRecord>, cx: &Context<'_>) -> Result<Grant, Refusal> {
    let record = record.ok_or(Refusal::UnknownSerial)?;
    if record.state == TicketState::Revoked || cx.lineage_revoked {
        return Err(Refusal::Revoked);
    }
    match record.state {
        TicketState::Live | TicketState::Revoked => {}
        TicketState::Spent => return again(ticket, record, cx).ok_or(Refusal::Spent),
        TicketState::Replaced { .. } => return again(ticket, record, cx).ok_or(Refusal::Replaced),
    }
    if record.customer != ticket.customer
        || record.title != ticket.title.as_str()
        || record.plays != ticket.plays
        || record.expires != ticket.expires
    {
        return Err(Refusal::Mismatch);
    }
    if ticket.is_expired(cx.now) {
        return Err(Refusal::Expired);
    }
    let key = cx.title_key.ok_or(Refusal::UnknownTitle)?;
    // The certificate carries this ticket's K1: with the ticket's K2 it gives KM.
    let life = cx.running_time_s.max(60) + cx.margin_s;
    let certificate = Certificate {
        serial: cx.fresh_serial,
        customer: ticket.customer,
        created: cx.now,
        expires: cx.now.saturating_add(life),
        title: ticket.title.clone(),
        key_part: record.k1,
    };
    if ticket.plays == UNLIMITED {
        return Ok(Grant {
            certificate,
            presented_state: TicketState::Live,
            presented_last_grant: None,
            replacement: None,
            repeated: false,
        });
    }
    let last = cx.request.map(|request| LastGrant {
        certificate: certificate.serial,
        at: certificate.created,
        expires: certificate.expires,
        request,
    });
    if ticket.plays == 1 {
        return Ok(Grant {
            certificate,
            presented_state: TicketState::Spent,
            presented_last_grant: last,
            replacement: None,
            repeated: false,
        });
    }
    let plays = ticket.plays - 1;
    let replacement = PlayTicket {
        serial: cx.fresh_serial_2,
        customer: ticket.customer,
        created: cx.now,
        expires: ticket.expires,
        title: ticket.title.clone(),
        plays,
        key_part: key.xor(&cx.fresh_k1),
    };
    let rec = TicketRecord {
        customer: ticket.customer,
        title: ticket.title.to_string(),
        plays,
        expires: ticket.expires,
        created: cx.now,
        k1: cx.fresh_k1,
        order: record.order,
        state: TicketState::Live,
        last_grant: None,
    };
    Ok(Grant {
        certificate,
        presented_state: TicketState::Replaced { by: cx.fresh_serial_2 },
        presented_last_grant: last,
        replacement: Some((replacement, rec)),
        repeated: false,
    })
}

/// The grant that used up `record`, given again: to a request with the same
/// idempotency key, within the retry window, the ticket as recorded, and (for
/// a replaced ticket) its replacement still unplayed. `None` otherwise.
fn again(ticket: &PlayTicket, record: &TicketRecord, cx: &Context<'_>) -> Option<Grant> {
    let last = record.last_grant.as_ref()?;
    if cx.request != Some(last.request) || cx.now >= last.at.saturating_add(cx.retry_window_s) || cx.now < last.at {
        return None;
    }
    if record.customer != ticket.customer
        || record.title != ticket.title.as_str()
        || record.plays != ticket.plays
        || record.expires != ticket.expires
    {
        return None;
    }
    let certificate = Certificate {
        serial: last.certificate,
        customer: ticket.customer,
        created: last.at,
        expires: last.expires,
        title: ticket.title.clone(),
        key_part: record.k1,
    };
    let replacement = match record.state {
        TicketState::Replaced { by } => {
            let r = cx.replacement.filter(|r| r.state == TicketState::Live)?;
            let key = cx.title_key?;
            let t = PlayTicket {
                serial: by,
                customer: r.customer,
                created: r.created,
                expires: r.expires,
                title: ticket.title.clone(),
                plays: r.plays,
                key_part: key.xor(&r.k1),
            };
            Some((t, r.clone()))
        }
        TicketState::Spent => None,
        TicketState::Live | TicketState::Revoked => return None,
    };
    Some(Grant { certificate, presented_state: record.state, presented_last_grant: None, replacement, repeated: true })
}

/// A new ticket for an order: fresh K1, K2 = KM xor K1.
// Every input explicit, randomness included, so the decision stays pure and testable.
#[allow(clippy::too_many_arguments)]
pub fn issue(
    customer: u64,
    title: &TitleId,
    plays: u32,
    expires: u64,
    now: u64,
    order: u64,
    key: &TitleKey,
    serial: [u8; 16],
    k1: [u8; 32],
) -> (PlayTicket, TicketRecord) {
    let ticket = PlayTicket { serial, customer, created: now, expires, title: title.clone(), plays, key_part: key.xor(&k1) };
    let record = TicketRecord {
        customer,
        title: title.to_string(),
        plays,
        expires,
        created: now,
        k1,
        order,
        state: TicketState::Live,
        last_grant: None,
    };
    (ticket, record)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A 3-play rental of "film", issued at 100 (plays for 10,000 s).
    fn three_play_rental() -> (TitleKey, PlayTicket, TicketRecord) {
        let km = TitleKey::generate();
        let (t, r) = issue(1, &TitleId::new("film").unwrap(), 3, 10_000, 100, 5, &km, [1; 16], [2; 32]);
        (km, t, r)
    }

    fn cx<'a>(key: &'a TitleKey, now: u64) -> Context<'a> {
        Context {
            now,
            title_key: Some(key),
            running_time_s: 600,
            margin_s: 3600,
            fresh_serial: [7; 16],
            fresh_serial_2: [8; 16],
            fresh_k1: [9; 32],
            lineage_revoked: false,
            request: Some([0x11; 32]),
            retry_window_s: 60,
            replacement: None,
        }
    }

    #[test]
    fn rental_counts_down_and_keys_rejoin() {
        let km = TitleKey::generate();
        let title = TitleId::new("film").unwrap();
        let (t, r) = issue(1, &title, 3, 10_000, 100, 5, &km, [1; 16], [2; 32]);
        let g = decide(&t, Some(&r), &cx(&km, 200)).unwrap();
        assert_eq!(TitleKey::from_bytes(t.key_part).xor(&g.certificate.key_part), *km.expose());
        assert_eq!(g.certificate.expires, 200 + 600 + 3600);
        assert_eq!(g.presented_state, TicketState::Replaced { by: [8; 16] });
        let (t2, r2) = g.replacement.unwrap();
        assert_eq!(t2.plays, 2);
        assert_ne!(t2.key_part, t.key_part, "fresh split per ticket");
        let g2 = decide(&t2, Some(&r2), &cx(&km, 300)).unwrap();
        assert_eq!(TitleKey::from_bytes(t2.key_part).xor(&g2.certificate.key_part), *km.expose());
        let (t3, r3) = g2.replacement.unwrap();
        let g3 = decide(&t3, Some(&r3), &cx(&km, 400)).unwrap();
        assert!(g3.replacement.is_none());
        assert_eq!(g3.presented_state, TicketState::Spent);
    }

    #[test]
    fn refusals() {
        let km = TitleKey::generate();
        let title = TitleId::new("film").unwrap();
        let (t, r) = issue(1, &title, 2, 1000, 100, 5, &km, [1; 16], [2; 32]);
        assert_eq!(decide(&t, None, &cx(&km, 200)).unwrap_err(), Refusal::UnknownSerial);
        assert_eq!(decide(&t, Some(&r), &cx(&km, 1000)).unwrap_err(), Refusal::Expired);
        for (state, want) in [
            (TicketState::Spent, Refusal::Spent),
            (TicketState::Revoked, Refusal::Revoked),
            (TicketState::Replaced { by: [0; 16] }, Refusal::Replaced),
        ] {
            let mut r2 = r.clone();
            r2.state = state;
            assert_eq!(decide(&t, Some(&r2), &cx(&km, 200)).unwrap_err(), want);
        }
        let other = TicketRecord { customer: 2, ..r.clone() };
        assert_eq!(decide(&t, Some(&other), &cx(&km, 200)).unwrap_err(), Refusal::Mismatch);
        let c = Context { title_key: None, ..cx(&km, 200) };
        assert_eq!(decide(&t, Some(&r), &c).unwrap_err(), Refusal::UnknownTitle);
    }

    #[test]
    fn a_revoked_lineage_refuses_a_live_replacement() {
        let (km, t, r) = three_play_rental();
        let (t2, r2) = decide(&t, Some(&r), &cx(&km, 200)).unwrap().replacement.unwrap();
        assert_eq!(r2.state, TicketState::Live);
        let c = Context { lineage_revoked: true, ..cx(&km, 300) };
        assert_eq!(decide(&t2, Some(&r2), &c).unwrap_err(), Refusal::Revoked);
    }

    #[test]
    fn a_used_up_ticket_retried_with_its_key_in_the_window_gets_the_same_answer() {
        let (km, t, r) = three_play_rental();
        let g = decide(&t, Some(&r), &cx(&km, 200)).unwrap();
        let (t2, r2) = g.replacement.clone().unwrap();
        let mut used = r.clone();
        used.state = g.presented_state;
        used.last_grant = g.presented_last_grant.clone();
        let mut c = cx(&km, 230);
        c.fresh_serial = [0x55; 16];
        c.replacement = Some(&r2);
        let again = decide(&t, Some(&used), &c).unwrap();
        assert!(again.repeated);
        assert_eq!(again.certificate, g.certificate, "same certificate, not a new one");
        assert_eq!(again.replacement.as_ref().unwrap().0, t2, "same replacement");
        assert_eq!(again.presented_state, used.state);
        // Another key or none, past the window, a played replacement, a revoked order: refused.
        for request in [Some([0x22; 32]), None] {
            let mut other = cx(&km, 230);
            other.request = request;
            other.replacement = Some(&r2);
            assert_eq!(decide(&t, Some(&used), &other).unwrap_err(), Refusal::Replaced);
        }
        let mut late = cx(&km, 260);
        late.replacement = Some(&r2);
        assert_eq!(decide(&t, Some(&used), &late).unwrap_err(), Refusal::Replaced);
        let mut played = r2.clone();
        played.state = TicketState::Replaced { by: [9; 16] };
        let mut c2 = cx(&km, 230);
        c2.replacement = Some(&played);
        assert_eq!(decide(&t, Some(&used), &c2).unwrap_err(), Refusal::Replaced);
        let mut revoked = cx(&km, 230);
        revoked.replacement = Some(&r2);
        revoked.lineage_revoked = true;
        assert_eq!(decide(&t, Some(&used), &revoked).unwrap_err(), Refusal::Revoked);
        // The last play of a rental: spent, and its certificate given again.
        let (t1, r1) = issue(1, &TitleId::new("film").unwrap(), 1, 10_000, 100, 5, &km, [3; 16], [4; 32]);
        let g1 = decide(&t1, Some(&r1), &cx(&km, 200)).unwrap();
        let mut spent = r1.clone();
        spent.state = g1.presented_state;
        spent.last_grant = g1.presented_last_grant.clone();
        assert_eq!(decide(&t1, Some(&spent), &cx(&km, 210)).unwrap().certificate, g1.certificate);
        assert_eq!(decide(&t1, Some(&spent), &cx(&km, 260)).unwrap_err(), Refusal::Spent);
    }

    #[test]
    fn debug_output_carries_no_key_part() {
        let km = TitleKey::generate();
        let (t, r) = issue(1, &TitleId::new("film").unwrap(), 3, 10_000, 100, 5, &km, [1; 16], [0xa7; 32]);
        let g = decide(&t, Some(&r), &cx(&km, 200)).unwrap();
        let text = format!("{t:?} {r:?} {g:?}");
        for secret in [hex::encode(t.key_part), hex::encode(r.k1), hex::encode(g.replacement.as_ref().unwrap().0.key_part)] {
            assert!(!text.contains(&secret), "{text}");
        }
        let dec = |b: &[u8; 32]| b.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
        assert!(!text.contains(&dec(&t.key_part)) && !text.contains(&dec(&r.k1)), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn bought_ticket_never_expires_and_is_not_replaced() {
        let km = TitleKey::generate();
        let (t, r) = issue(1, &TitleId::new("film").unwrap(), UNLIMITED, 0, 100, 5, &km, [1; 16], [2; 32]);
        for now in [200, u64::MAX / 2] {
            let g = decide(&t, Some(&r), &cx(&km, now)).unwrap();
            assert!(g.replacement.is_none());
            assert_eq!(g.presented_state, TicketState::Live);
        }
    }
}

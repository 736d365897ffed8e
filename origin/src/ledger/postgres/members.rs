//! Cluster members on the shared state: heartbeats as conditional writes over
//! the record read, retirement, the member list.

use super::*;

impl PgState {
    /// Adds or refreshes a member (soft state: its heartbeat).
    pub fn upsert_member(&self, m: &Member) -> Result<(), OriginError> {
        self.execute(
            "INSERT INTO members (name, record) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET record = excluded.record",
            &[&m.name, &json(m)?],
        )
        .map(|_| ())
    }

    /// Retires a member (see the embedded engine).
    pub fn retire_member(&self, name: &str, now_ms: u64) -> Result<(), OriginError> {
        self.transaction("retire", |tx| {
            tx.x(
                "INSERT INTO retired_members (name, at_ms) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET at_ms = excluded.at_ms",
                &[&name, &int(now_ms)],
            )?;
            tx.x("DELETE FROM members WHERE name = $1", &[&name])?;
            Ok(())
        })
    }

    /// When `name` was last retired (Unix milliseconds), if ever.
    pub fn retired_at(&self, name: &str) -> Result<Option<u64>, OriginError> {
        Ok(self.query("SELECT at_ms FROM retired_members WHERE name = $1", &[&name])?.first().map(|r| id(r.get(0))))
    }

    /// A member by name, with its record's bytes as stored.
    pub fn member_as_stored(&self, name: &str) -> Result<Option<(Member, Vec<u8>)>, OriginError> {
        let rows = self.query("SELECT record FROM members WHERE name = $1", &[&name])?;
        rows.first().map(|r| -> Result<_, OriginError> { Ok((parse("member", r.get(0))?, r.get(0))) }).transpose()
    }

    /// Writes a member's record if the stored one is still `was` (a
    /// conditional write: no lock held between the read and this).
    pub fn put_member_if(&self, m: &Member, was: Option<&[u8]>) -> Result<bool, OriginError> {
        let n = match was {
            None => {
                self.execute("INSERT INTO members (name, record) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", &[&m.name, &json(m)?])?
            }
            Some(old) => self.execute("UPDATE members SET record = $2 WHERE name = $1 AND record = $3", &[&m.name, &json(m)?, &old])?,
        };
        Ok(n == 1)
    }

    /// A member by name.
    pub fn member(&self, name: &str) -> Result<Option<Member>, OriginError> {
        let rows = self.query("SELECT record FROM members WHERE name = $1", &[&name])?;
        rows.first().map(|r| parse("member", r.get(0))).transpose()
    }

    /// Every member.
    pub fn members(&self) -> Result<Vec<Member>, OriginError> {
        self.query("SELECT record FROM members ORDER BY name", &[])?.iter().map(|r| parse("member", r.get(0))).collect()
    }
}

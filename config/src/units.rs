//! Human units in config values: byte sizes, durations and daily time windows.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A size in bytes: an integer, or text such as `"64MiB"`, `"1.5GB"`, `"512k"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"64MiB"`-style text. Binary (KiB, MiB, GiB, TiB; k, m, g, t) and decimal (KB, MB, GB, TB) suffixes.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (num, unit) = (&s[..split], s[split..].trim());
        if num.is_empty() {
            return Err(format!("{s:?} is not a size (try 1048576 or \"1MiB\")"));
        }
        let mult: u64 = match unit {
            "" | "B" | "b" => 1,
            "KiB" | "k" | "K" => 1 << 10,
            "MiB" | "m" | "M" => 1 << 20,
            "GiB" | "g" | "G" => 1 << 30,
            "TiB" | "t" | "T" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => return Err(format!("unknown size unit {other:?} (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)")),
        };
        let n: f64 = num.parse().map_err(|_| format!("{num:?} is not a number"))?;
        let bytes = n * mult as f64;
        if !bytes.is_finite() || bytes > u64::MAX as f64 / 2.0 {
            return Err(format!("{s:?} is too large"));
        }
        Ok(Self(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(1u64 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (m, u) in units {
            if self.0 >= m && self.0.is_multiple_of(m) {
                return write!(f, "{}{u}", self.0 / m);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expecting = "a byte size such as 1048576 or \"1MiB\"";
        d.deserialize_any(NumberOrText { expecting, negative: "a size cannot be negative", number: ByteSize, text: ByteSize::parse })
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A duration: `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"`, or an integer of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// Parses `"30s"`-style text.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = (&s[..split], &s[split..]);
        let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration (try \"30s\")"))?;
        let ms: u64 = match unit {
            "ms" => 1,
            "" | "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => return Err(format!("unknown duration unit {other:?} (use ms, s, m, h, d)")),
        };
        n.checked_mul(ms).map(|ms| Self(std::time::Duration::from_millis(ms))).ok_or_else(|| format!("{s:?} is too long"))
    }

    /// From whole seconds.
    pub fn secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expecting = "a duration such as \"30s\" or a number of seconds";
        d.deserialize_any(NumberOrText {
            expecting,
            negative: "a duration cannot be negative",
            number: Duration::secs,
            text: Duration::parse,
        })
    }
}

/// A unit written either as a bare number (in its base unit) or as text with
/// a suffix: one serde visitor for them all.
struct NumberOrText<T> {
    expecting: &'static str,
    negative: &'static str,
    number: fn(u64) -> T,
    text: fn(&str) -> Result<T, String>,
}

impl<T> de::Visitor<'_> for NumberOrText<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        u64::try_from(v).map(self.number).map_err(|_| E::custom(self.negative))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok((self.number)(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.text)(v).map_err(E::custom)
    }
}

/// A daily window in UTC, `"HH:MM-HH:MM"`; it may wrap past midnight (`"22:00-04:00"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Start, minutes after midnight UTC.
    pub start_min: u16,
    /// End, minutes after midnight UTC (exclusive).
    pub end_min: u16,
}

impl TimeWindow {
    /// Parses `"02:00-05:30"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let hm = |t: &str| -> Result<u16, String> {
            let (h, m) = t.trim().split_once(':').ok_or_else(|| format!("{t:?} is not HH:MM"))?;
            let (h, m): (u16, u16) =
                (h.parse().map_err(|_| format!("bad hour in {t:?}"))?, m.parse().map_err(|_| format!("bad minute in {t:?}"))?);
            if h > 23 || m > 59 {
                return Err(format!("{t:?} is not a time of day"));
            }
            Ok(h * 60 + m)
        };
        let (a, b) = s.split_once('-').ok_or_else(|| format!("{s:?} is not a window like \"02:00-05:00\""))?;
        let w = Self { start_min: hm(a)?, end_min: hm(b)? };
        if w.start_min == w.end_min {
            return Err(format!("{s:?} is an empty window"));
        }
        Ok(w)
    }

    /// Whether `minute_of_day` (0..1440, UTC) falls inside the window.
    pub fn contains(&self, minute_of_day: u16) -> bool {
        if self.start_min < self.end_min {
            (self.start_min..self.end_min).contains(&minute_of_day)
        } else {
            minute_of_day >= self.start_min || minute_of_day < self.end_min
        }
    }
}

impl<'de> Deserialize<'de> for TimeWindow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TimeWindow::parse(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("1024").unwrap().0, 1024);
        assert_eq!(ByteSize::parse("64MiB").unwrap().0, 64 << 20);
        assert_eq!(ByteSize::parse("1.5 GiB").unwrap().0, 3 << 29);
        assert_eq!(ByteSize::parse("2GB").unwrap().0, 2_000_000_000);
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        for bad in ["", "MiB", "1 XB", "-1", "1e999999", "1..2M", "99999999999999999999T"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("250ms").unwrap().0.as_millis(), 250);
        assert_eq!(Duration::parse("30").unwrap().0.as_secs(), 30);
        assert_eq!(Duration::parse("2h").unwrap().0.as_secs(), 7200);
        for bad in ["", "s", "1y", "-3s", "1.5s", "99999999999999999999d"] {
            assert!(Duration::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn windows() {
        let w = TimeWindow::parse("22:00-04:00").unwrap();
        assert!(w.contains(23 * 60) && w.contains(0) && w.contains(3 * 60 + 59) && !w.contains(4 * 60) && !w.contains(12 * 60));
        let w = TimeWindow::parse("02:00-05:00").unwrap();
        assert!(w.contains(2 * 60) && !w.contains(5 * 60) && !w.contains(60));
        for bad in ["", "2-5", "24:00-01:00", "01:60-02:00", "03:00-03:00", "a:b-c:d"] {
            assert!(TimeWindow::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}

/// A secret from the config (a token, a key, a credential, a certificate):
/// read like a string, used like one (`&str` by deref), never printed:
/// `Debug` shows its length only, so a config in a log or a panic message
/// leaks nothing. No `Display`: sending one (a bearer token, a header) takes
/// an explicit [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

// By hand: serde's own errors quote the value they did not expect
// ("invalid type: integer `1234…`"), which would print a mistyped secret.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (a secret: its value is not shown)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string (its value is not shown)"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string (its value is not shown)"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string (its value is not shown)"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("a secret must be a string (its value is not shown)"))
            }
        }
        d.deserialize_string(V)
    }
}

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

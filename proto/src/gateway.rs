//! Which requests the smart client's local gateway (`tranzcast play
//! --serve`) answers (pure; fuzzed with the range decision it leads to,
//! `fuzz/fuzz_targets/gateway.rs`): a standard player asks `GET` or `HEAD`
//! of `/<title>` or `/<title>.<extension>`; everything else is refused
//! with a status and a reason.

/// Why the gateway refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 405: only GET and HEAD.
    Method,
    /// 404: the gateway plays one title.
    NotFound,
}

impl Refusal {
    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            Self::Method => 405,
            Self::NotFound => 404,
        }
    }
}

/// Whether `method` on `path` (the URI's path) asks for `title`.
///
/// # Errors
/// Another method, or another resource.
pub fn route(method: &str, path: &str, title: &str) -> Result<(), Refusal> {
    if method != "GET" && method != "HEAD" {
        return Err(Refusal::Method);
    }
    let path = path.strip_prefix('/').unwrap_or(path);
    let name = path.split_once('.').map_or(path, |(n, _)| n);
    if name.is_empty() || name != title {
        return Err(Refusal::NotFound);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_by_get_or_head_only() {
        assert_eq!(route("GET", "/film.mp4", "film"), Ok(()));
        assert_eq!(route("HEAD", "/film", "film"), Ok(()));
        assert_eq!(route("POST", "/film.mp4", "film"), Err(Refusal::Method));
        assert_eq!(route("get", "/film.mp4", "film"), Err(Refusal::Method));
        for p in ["/other.mp4", "/", "", "/.mp4", "/film/x", "/../film", "/filmx", "/é.mp4"] {
            assert_eq!(route("GET", p, "film"), Err(Refusal::NotFound), "{p}");
        }
        assert_eq!(route("GET", "/", ""), Err(Refusal::NotFound), "an empty title is no title");
    }
}

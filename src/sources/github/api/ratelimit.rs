//! GitHub's rate limits, read from response headers (github-rgw-rbd.md §1.11).
//!
//! * Primary limit: every answer carries `X-RateLimit-Limit`, `-Remaining`, `-Used`, `-Reset`
//!   (epoch seconds) and `-Resource` (`core` for the REST calls made here). [`Quota`] keeps
//!   them; the client feeds them to the shared budget instead of calling `GET /rate_limit`.
//! * Being limited: a 403 or 429 answer. GitHub documents the order of precedence: a
//!   `Retry-After` header gives the seconds to wait; otherwise `X-RateLimit-Remaining: 0` means
//!   waiting until `X-RateLimit-Reset`; otherwise (a secondary limit without headers) wait at
//!   least one minute, and exponentially longer when it persists. A 403 with none of these and
//!   no "rate limit" in its message is a permission error, not a limit.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::Duration;

/// The primary quota as of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// Requests per window (`X-RateLimit-Limit`).
    pub limit: Option<u64>,
    /// Requests left in the window (`X-RateLimit-Remaining`).
    pub remaining: u64,
    /// When the window resets, in epoch seconds (`X-RateLimit-Reset`).
    pub reset: u64,
    /// Which quota (`X-RateLimit-Resource`, e.g. `core`), when sent.
    pub resource: Option<String>,
}

impl Quota {
    /// The quota in `headers`, when `X-RateLimit-Remaining` and `-Reset` are both present.
    pub fn from_headers(headers: &HeaderMap) -> Option<Quota> {
        Some(Quota {
            limit: header_u64(headers, "x-ratelimit-limit"),
            remaining: header_u64(headers, "x-ratelimit-remaining")?,
            reset: header_u64(headers, "x-ratelimit-reset")?,
            resource: headers
                .get("x-ratelimit-resource")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        })
    }

    /// Whether this is the REST `core` quota (the one the shared budget tracks). An answer
    /// without a resource header is taken as `core`.
    pub fn is_core(&self) -> bool {
        self.resource.as_deref().is_none_or(|r| r == "core")
    }
}

/// A 403 or 429 answer recognised as a rate limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// How long the server asks us to wait (before any test scaling).
    pub wait: Duration,
    /// What kind of limit, for messages: "secondary rate limit (Retry-After: 60)", ...
    pub reason: String,
    /// A secondary limit (GitHub asks every client of the token to hold back), rather than
    /// the exhausted primary quota.
    pub secondary: bool,
}

/// Seconds added to a wait until `X-RateLimit-Reset`: the header has whole seconds and the
/// clocks of GitHub and this host differ a little.
const RESET_MARGIN: Duration = Duration::from_secs(1);

/// The documented minimum wait for a secondary limit that gives no header.
const SECONDARY_MIN_WAIT: Duration = Duration::from_secs(60);

/// Classifies an error answer: `Some` when it is a rate limit (primary or secondary).
/// `now` is the current epoch time in seconds; `previous_waits` counts the limits already met by
/// this request, so that a headerless secondary limit waits 1, 2, 4 ... minutes.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: f64,
    previous_waits: u32,
) -> Option<Limited> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    if let Some(seconds) = header_u64(headers, RETRY_AFTER.as_str()) {
        return Some(Limited {
            wait: Duration::from_secs(seconds),
            reason: format!("secondary rate limit (Retry-After: {seconds})"),
            secondary: true,
        });
    }
    if let Some(quota) = Quota::from_headers(headers).filter(|q| q.remaining == 0) {
        let until_reset = (quota.reset as f64 - now).max(0.0);
        return Some(Limited {
            wait: Duration::from_secs_f64(until_reset) + RESET_MARGIN,
            reason: format!(
                "primary rate limit exhausted ({} requests per hour) until {}",
                quota.limit.map_or("?".into(), |l| l.to_string()),
                format_epoch(quota.reset)
            ),
            secondary: false,
        });
    }
    let mentions_limit = message.to_ascii_lowercase().contains("rate limit");
    if status == StatusCode::TOO_MANY_REQUESTS || mentions_limit {
        let factor = 1u32 << previous_waits.min(10);
        return Some(Limited {
            wait: SECONDARY_MIN_WAIT * factor,
            reason: "secondary rate limit (no Retry-After)".into(),
            secondary: true,
        });
    }
    None
}

/// An epoch time as an RFC 3339 UTC timestamp, for messages.
pub fn format_epoch(epoch: u64) -> String {
    i64::try_from(epoch)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| format!("epoch {epoch}"), |t| t.to_string())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn reads_the_primary_quota() {
        let h = headers(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "4990"),
            ("x-ratelimit-used", "10"),
            ("x-ratelimit-reset", "1700000000"),
            ("x-ratelimit-resource", "core"),
        ]);
        let q = Quota::from_headers(&h).unwrap();
        assert_eq!(
            (q.limit, q.remaining, q.reset),
            (Some(5000), 4990, 1_700_000_000)
        );
        assert!(q.is_core());
        let search = headers(&[
            ("x-ratelimit-remaining", "1"),
            ("x-ratelimit-reset", "1"),
            ("x-ratelimit-resource", "search"),
        ]);
        assert!(!Quota::from_headers(&search).unwrap().is_core());
        assert_eq!(
            Quota::from_headers(&headers(&[("x-ratelimit-remaining", "3")])),
            None
        );
    }

    #[test]
    fn retry_after_wins_over_the_reset() {
        let h = headers(&[
            ("retry-after", "7"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "2000"),
        ]);
        let l = classify(StatusCode::FORBIDDEN, &h, "", 1000.0, 0).unwrap();
        assert_eq!(l.wait, Duration::from_secs(7));
    }

    #[test]
    fn exhausted_quota_waits_until_the_reset() {
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1010"),
        ]);
        let l = classify(StatusCode::FORBIDDEN, &h, "", 1000.5, 0).unwrap();
        assert_eq!(l.wait, Duration::from_secs_f64(9.5) + RESET_MARGIN);
        assert!(l.reason.contains("primary"), "{}", l.reason);
        // A reset already past still waits the margin, never a negative time.
        let l = classify(StatusCode::TOO_MANY_REQUESTS, &h, "", 5000.0, 0).unwrap();
        assert_eq!(l.wait, RESET_MARGIN);
    }

    #[test]
    fn headerless_secondary_limits_back_off_exponentially() {
        let h = headers(&[
            ("x-ratelimit-remaining", "12"),
            ("x-ratelimit-reset", "1010"),
        ]);
        let msg = "You have exceeded a secondary rate limit. Please wait a few minutes.";
        assert_eq!(
            classify(StatusCode::FORBIDDEN, &h, msg, 0.0, 0)
                .unwrap()
                .wait,
            Duration::from_secs(60)
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &h, "", 0.0, 2)
                .unwrap()
                .wait,
            Duration::from_secs(240)
        );
    }

    #[test]
    fn a_permission_403_is_not_a_limit() {
        let h = headers(&[
            ("x-ratelimit-remaining", "12"),
            ("x-ratelimit-reset", "1010"),
        ]);
        assert_eq!(
            classify(
                StatusCode::FORBIDDEN,
                &h,
                "Resource not accessible by integration",
                0.0,
                0
            ),
            None
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, &h, "rate limit", 0.0, 0),
            None
        );
    }

    #[test]
    fn epochs_format_as_utc() {
        assert_eq!(format_epoch(0), "1970-01-01T00:00:00Z");
    }
}

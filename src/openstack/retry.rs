//! When a failed request is tried again, and after how long.
//!
//! Only idempotent methods are retried: a POST that timed out may have created a server, and a
//! second one would leak it. Retried: connection failures and timeouts, 502/503/504 (a proxy or
//! an API worker restarting), and 429 after the `Retry-After` the cloud asks for.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles at each further retry.
    pub initial_delay: Duration,
    /// Cap of the exponential delay.
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the error is returned at once.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// What happened to one attempt.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome<'a> {
    Status {
        status: StatusCode,
        retry_after: Option<&'a str>,
    },
    /// No HTTP answer: refused, timed out, cut.
    Transport,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Decision {
    Retry(Duration),
    Stop,
}

pub(crate) fn is_idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .contains(method)
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// `attempts` is how many attempts were made so far (1 after the first).
    pub(crate) fn decide(&self, method: &Method, attempts: u32, outcome: Outcome<'_>) -> Decision {
        if !is_idempotent(method) || attempts >= self.max_attempts {
            return Decision::Stop;
        }
        let backoff = || Decision::Retry(jitter(self.backoff(attempts - 1)));
        match outcome {
            Outcome::Transport => backoff(),
            Outcome::Status {
                status,
                retry_after,
            } => {
                let retryable = matches!(status.as_u16(), 429 | 502 | 503 | 504);
                if !retryable {
                    return Decision::Stop;
                }
                match retry_after.and_then(|v| parse_retry_after(v, Utc::now())) {
                    Some(wait) if wait > self.max_retry_after => Decision::Stop,
                    Some(wait) => Decision::Retry(wait),
                    None => backoff(),
                }
            }
        }
    }

    /// The delay before retry number `retry` (0 for the first), before jitter.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(20));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }
}

/// Between half and all of `base`, so that clients that failed together do not retry together.
fn jitter(base: Duration) -> Duration {
    let half = base / 2;
    let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
    half + Duration::from_millis(if spread == 0 {
        0
    } else {
        rand::random_range(0..=spread)
    })
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A past date means now.
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<&str>) -> Outcome<'_> {
        Outcome::Status {
            status: StatusCode::from_u16(code).unwrap(),
            retry_after,
        }
    }

    #[test]
    fn post_is_never_retried() {
        let policy = RetryPolicy::default();
        for outcome in [
            status(503, None),
            status(429, Some("1")),
            Outcome::Transport,
        ] {
            assert_eq!(policy.decide(&Method::POST, 1, outcome), Decision::Stop);
            assert_eq!(policy.decide(&Method::PATCH, 1, outcome), Decision::Stop);
        }
    }

    #[test]
    fn idempotent_methods_retry_on_gateway_errors_and_transport() {
        let policy = RetryPolicy::default();
        for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            for outcome in [
                status(502, None),
                status(503, None),
                status(504, None),
                Outcome::Transport,
            ] {
                let Decision::Retry(delay) = policy.decide(&method, 1, outcome) else {
                    panic!("{method} {outcome:?} not retried");
                };
                assert!(delay >= Duration::from_millis(250) && delay <= Duration::from_millis(500));
            }
            for code in [400, 401, 403, 404, 409, 500] {
                assert_eq!(
                    policy.decide(&method, 1, status(code, None)),
                    Decision::Stop
                );
            }
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let policy = RetryPolicy::default();
        assert!(matches!(
            policy.decide(&Method::GET, 4, status(503, None)),
            Decision::Retry(_)
        ));
        assert_eq!(
            policy.decide(&Method::GET, 5, status(503, None)),
            Decision::Stop
        );
        assert_eq!(
            RetryPolicy::none().decide(&Method::GET, 1, status(503, None)),
            Decision::Stop
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (0..8)
            .map(|n| policy.backoff(n).as_millis() as u64)
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 20000, 20000]);
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(20));
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(4));
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_secs(4));
        }
    }

    #[test]
    fn too_many_requests_honours_retry_after() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.decide(&Method::GET, 1, status(429, Some("7"))),
            Decision::Retry(Duration::from_secs(7))
        );
        assert_eq!(
            policy.decide(&Method::GET, 1, status(503, Some("3"))),
            Decision::Retry(Duration::from_secs(3))
        );
        // Longer than we are willing to wait: give the error back now.
        assert_eq!(
            policy.decide(&Method::GET, 1, status(429, Some("3600"))),
            Decision::Stop
        );
        // Unparseable: plain backoff.
        assert!(matches!(
            policy.decide(&Method::DELETE, 1, status(429, Some("soon"))),
            Decision::Retry(_)
        ));
    }

    #[test]
    fn retry_after_formats() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("tomorrow", now), None);
    }
}

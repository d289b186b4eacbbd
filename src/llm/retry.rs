//! Retries a model step: transient failures (timeout, 429, 5xx, unreachable, malformed reply) are
//! tried again with exponential backoff and full jitter (or, when the endpoint says how long
//! to wait with `Retry-After`, no sooner than that), and every attempt must finish inside one
//! deadline. Permanent failures (400, 401, 404, bad config) are returned at once.

use super::LlmError;
use rand::Rng;
use std::future::Future;
use std::time::{Duration, Instant};

/// How to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub deadline: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

/// What happened: the result and every failure seen on the way.
pub struct Retried<T> {
    pub result: Result<T, LlmError>,
    pub failures: Vec<LlmError>,
}

/// Runs `attempt` until it succeeds, fails permanently, runs out of attempts, or the deadline
/// would pass during the next backoff.
pub async fn retry<T, F, Fut>(
    policy: RetryPolicy,
    transient: impl Fn(&LlmError) -> bool,
    mut attempt: F,
) -> Retried<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, LlmError>>,
{
    let start = Instant::now();
    let mut failures = vec![];
    for n in 0..policy.max_attempts.max(1) {
        let left = policy.deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        let outcome = match tokio::time::timeout(left, attempt()).await {
            Ok(r) => r,
            Err(_) => Err(LlmError::Timeout(policy.deadline.as_secs())),
        };
        match outcome {
            Ok(v) => {
                return Retried {
                    result: Ok(v),
                    failures,
                };
            }
            Err(e) if !transient(&e) => {
                return Retried {
                    result: Err(e),
                    failures,
                };
            }
            Err(e) => {
                tracing::warn!(attempt = n + 1, error = %e, "model step failed; retrying");
                failures.push(e);
            }
        }
        if n + 1 == policy.max_attempts {
            break;
        }
        let wait = match failures.last().and_then(LlmError::retry_after) {
            // The endpoint said when: never sooner, with a little jitter so that replicas
            // told the same instant do not all return at once.
            Some(asked) => {
                let spread = (asked / 10).min(Duration::from_secs(1)).as_millis() as u64;
                asked + Duration::from_millis(rand::rng().random_range(0..=spread))
            }
            None => {
                let cap = policy
                    .base_delay
                    .saturating_mul(2u32.saturating_pow(n))
                    .min(policy.max_delay);
                Duration::from_millis(rand::rng().random_range(0..=cap.as_millis().max(1) as u64))
            }
        };
        // A wait that would end past the deadline is not worth starting: the caller falls
        // back now, with the reason (the last failure says how long the endpoint asked for).
        if start.elapsed() + wait >= policy.deadline {
            break;
        }
        tokio::time::sleep(wait).await;
    }
    let last = failures
        .last()
        .cloned()
        .unwrap_or(LlmError::Timeout(policy.deadline.as_secs()));
    Retried {
        result: Err(last),
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            deadline: Duration::from_secs(5),
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn transient_then_success() {
        let n = AtomicU32::new(0);
        let r = retry(policy(), LlmError::transient, || async {
            if n.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(LlmError::RateLimited {
                    message: "slow down".into(),
                    retry_after: None,
                })
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.result, Ok(7));
        assert_eq!(r.failures.len(), 2);
    }

    #[tokio::test]
    async fn retry_after_is_respected_and_a_wait_past_the_deadline_is_not_started() {
        let n = AtomicU32::new(0);
        let started = Instant::now();
        let r = retry(policy(), LlmError::transient, || async {
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(LlmError::RateLimited {
                    message: "slow down".into(),
                    retry_after: Some(Duration::from_millis(400)),
                })
            } else {
                Ok(1)
            }
        })
        .await;
        assert_eq!(r.result, Ok(1));
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "retried after {:?}, before the endpoint's Retry-After",
            started.elapsed()
        );
        // Asked to wait a minute with 5 s left: one call, then the caller falls back at once.
        let n = AtomicU32::new(0);
        let started = Instant::now();
        let r: Retried<()> = retry(policy(), LlmError::transient, || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(LlmError::Server {
                status: 503,
                message: "overloaded".into(),
                retry_after: Some(Duration::from_secs(60)),
            })
        })
        .await;
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_secs(2));
        let why = r.result.unwrap_err().to_string();
        assert!(why.contains("asked to wait 60 s"), "{why}");
    }

    #[tokio::test]
    async fn permanent_failure_is_not_retried() {
        let n = AtomicU32::new(0);
        let r: Retried<()> = retry(policy(), LlmError::transient, || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(LlmError::Refused {
                status: 401,
                message: "bad key".into(),
            })
        })
        .await;
        assert!(matches!(r.result, Err(LlmError::Refused { .. })));
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn attempts_are_bounded_and_the_deadline_holds() {
        let n = AtomicU32::new(0);
        let r: Retried<()> = retry(policy(), LlmError::transient, || async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(LlmError::Server {
                status: 500,
                message: "boom".into(),
                retry_after: None,
            })
        })
        .await;
        assert_eq!(n.load(Ordering::SeqCst), 4);
        assert!(r.result.is_err());
        let p = RetryPolicy {
            deadline: Duration::from_millis(50),
            ..policy()
        };
        let started = Instant::now();
        let r: Retried<()> = retry(p, LlmError::transient, || async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        })
        .await;
        assert!(matches!(r.result, Err(LlmError::Timeout(_))));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

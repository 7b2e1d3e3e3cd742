//! Retries of a step: `{"retry": {"maxAttempts": 3, "backoff": {"initialSeconds": 1,
//! "factor": 2, "maxSeconds": 300}, "jitter": true}}` in its config, with defaults for
//! what is left out.

use std::time::Duration;

use serde_json::Value;

/// How often, and how far apart, a failing step is tried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: no retry). At most [`MAX_ATTEMPTS`].
    pub max_attempts: u32,
    pub initial: Duration,
    pub factor: f64,
    pub max: Duration,
    /// Spread each delay over its upper half at random, so that steps failing together
    /// do not retry together.
    pub jitter: bool,
}

/// The most attempts a step may ask for.
pub const MAX_ATTEMPTS: u32 = 25;

impl RetryPolicy {
    /// The policy of a step's config, `default_attempts` when it names none (step types
    /// that call out retry by default; the others do not).
    pub fn of(config: &Value, default_attempts: u32) -> Self {
        let retry = config.get("retry");
        let number = |v: Option<&Value>| v.and_then(Value::as_f64).filter(|n| n.is_finite());
        let backoff = retry.and_then(|r| r.get("backoff"));
        let seconds = |key: &str, default: f64| {
            Duration::from_secs_f64(
                number(backoff.and_then(|b| b.get(key)))
                    .unwrap_or(default)
                    .clamp(0.0, 86_400.0),
            )
        };
        Self {
            max_attempts: number(retry.and_then(|r| r.get("maxAttempts")))
                .map_or(default_attempts, |n| n as u32)
                .clamp(1, MAX_ATTEMPTS),
            initial: seconds("initialSeconds", 1.0),
            factor: number(backoff.and_then(|b| b.get("factor")))
                .unwrap_or(2.0)
                .clamp(1.0, 10.0),
            max: seconds("maxSeconds", 300.0),
            jitter: retry
                .and_then(|r| r.get("jitter"))
                .and_then(Value::as_bool)
                .unwrap_or(true),
        }
    }

    /// The wait before attempt `attempt` (2 for the first retry); `unit` is a random
    /// number in `[0, 1)`, used when jitter is on. `None` once attempts are used up.
    pub fn delay_before(&self, attempt: u32, unit: f64) -> Option<Duration> {
        if attempt < 2 || attempt > self.max_attempts {
            return None;
        }
        let exponent = i32::try_from(attempt - 2).unwrap_or(i32::MAX);
        let full =
            (self.initial.as_secs_f64() * self.factor.powi(exponent)).min(self.max.as_secs_f64());
        let wait = if self.jitter {
            full / 2.0 + full / 2.0 * unit.clamp(0.0, 1.0)
        } else {
            full
        };
        Some(Duration::from_secs_f64(wait))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn backoff_grows_by_its_factor_up_to_its_cap() {
        let policy = RetryPolicy::of(
            &json!({"retry": {"maxAttempts": 5, "backoff": {"initialSeconds": 2, "factor": 3, "maxSeconds": 10}, "jitter": false}}),
            1,
        );
        let waits: Vec<_> = (1..=6).map(|a| policy.delay_before(a, 0.5)).collect();
        assert_eq!(
            waits,
            [
                None,
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(6)),
                Some(Duration::from_secs(10)),
                Some(Duration::from_secs(10)),
                None
            ]
        );
    }

    #[test]
    fn defaults_and_jitter() {
        let policy = RetryPolicy::of(&json!({}), 3);
        assert_eq!(policy.max_attempts, 3);
        assert!(policy.jitter);
        // Jitter keeps the wait in the upper half of the full delay.
        assert_eq!(
            policy.delay_before(2, 0.0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            policy.delay_before(2, 0.999_999).map(|d| d.as_millis()),
            Some(999)
        );
        // Nonsense is clamped, not trusted.
        let wild = RetryPolicy::of(
            &json!({"retry": {"maxAttempts": 1e9, "backoff": {"factor": -4}}}),
            1,
        );
        assert_eq!((wild.max_attempts, wild.factor), (MAX_ATTEMPTS, 1.0));
    }
}

//! Model providers: what turns a process version's messages and model settings into a
//! completion. [`OpenAiCompatible`] calls a chat-completions API through a connection of
//! the built-in `http` app, by way of the egress guard; [`Template`] calls nothing and
//! answers with the rendered prompt itself.
//!
//! A [`Provider`] makes one attempt; [`complete_with_retries`] (and
//! [`call_with_retries`], which also reports a failed call's attempts) retries the
//! transient failures (timeouts, rate limits, 5xx, connection failures) with jittered
//! exponential backoff, honouring a rate limit's `Retry-After`.
//!
//! Errors carry a stable [`ProviderError::code`] and a [`ProviderError::message`] that
//! is safe to show a client: it never holds a header, a secret or a URL.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod openai;
mod template;

pub use openai::{OpenAiCompatible, MAX_RESPONSE_BYTES};
pub use template::Template;

/// The longest wait between two attempts; a rate limit asking for longer ends the
/// retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Who says a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

/// One message of a chat prompt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: ChatRole,
    pub content: String,
}

impl Message {
    /// A message of `role` saying `content`.
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// The shape of answer a version asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON value (the provider's JSON mode).
    Json,
    /// JSON following `schema` (the provider's strict structured output); `name`
    /// identifies the schema to the provider.
    JsonSchema {
        name: String,
        schema: serde_json::Value,
    },
}

impl ResponseFormat {
    /// Whether the answer must be JSON.
    pub fn wants_json(&self) -> bool {
        !matches!(self, Self::Text)
    }
}

/// What a version asks of its model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSettings {
    /// The provider's model name (ignored by [`Template`]).
    pub model: String,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub response_format: ResponseFormat,
    /// How long one attempt may take, from connecting to the end of the answer.
    pub timeout: Duration,
    /// Attempts in all, the first included; 0 counts as 1.
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles for each later one.
    pub initial_backoff: Duration,
}

impl ModelSettings {
    /// Settings for `model`: text answers, the provider's own temperature and token
    /// limit, 60 s per attempt, 3 attempts, 500 ms before the first retry.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            temperature: None,
            max_tokens: None,
            response_format: ResponseFormat::Text,
            timeout: Duration::from_secs(60),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(500),
        }
    }
}

/// A model's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub content: String,
    /// Tokens of the prompt, as the provider counts them (0 when it does not say).
    pub input_tokens: i64,
    /// Tokens of the answer, as the provider counts them (0 when it does not say).
    pub output_tokens: i64,
    /// Attempts made, this successful one included.
    pub attempts: u32,
    /// Time spent in attempts, failed ones included, without the waits between them.
    pub provider_latency: Duration,
}

/// Why a provider gave no completion.
#[derive(Clone, Debug, PartialEq)]
pub enum ProviderError {
    /// An attempt took longer than its timeout, or the provider answered 408.
    Timeout,
    /// The provider answered 429; `retry_after` is when it said to come back.
    RateLimited { retry_after: Option<Duration> },
    /// The provider refused the request (a 4xx other than 408 and 429): asking again
    /// gets the same answer. `message` is the provider's, truncated and redacted.
    Rejected { status: u16, message: String },
    /// The provider failed (a 5xx) or could not be reached (`status` is `None`).
    Unavailable {
        status: Option<u16>,
        message: String,
    },
    /// The provider answered 2xx with something that is not a usable completion, or
    /// not the JSON the response format asks for.
    BadResponse(String),
    /// The egress guard refused the provider's address.
    Refused(String),
    /// The connection or settings cannot make a request.
    Misconfigured(String),
}

impl ProviderError {
    /// A stable code for clients and call logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout => "PROVIDER_TIMEOUT",
            Self::RateLimited { .. } => "PROVIDER_RATE_LIMITED",
            Self::Rejected { .. } => "PROVIDER_REJECTED",
            Self::Unavailable { .. } => "PROVIDER_UNAVAILABLE",
            Self::BadResponse(_) => "PROVIDER_BAD_RESPONSE",
            Self::Refused(_) => "EGRESS_REFUSED",
            Self::Misconfigured(_) => "PROVIDER_MISCONFIGURED",
        }
    }

    /// Whether another attempt may succeed: timeouts, rate limits, 5xx and connection
    /// failures.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::RateLimited { .. } | Self::Unavailable { .. }
        )
    }

    /// The error in words safe for clients: no header, secret or URL.
    pub fn message(&self) -> String {
        match self {
            Self::Timeout => "the model provider did not answer in time".into(),
            Self::RateLimited {
                retry_after: Some(after),
            } => format!(
                "the model provider is rate limiting requests (retry after {} s)",
                after.as_secs_f64().ceil()
            ),
            Self::RateLimited { retry_after: None } => {
                "the model provider is rate limiting requests".into()
            }
            Self::Rejected { status, message } => {
                format!("the model provider rejected the request (HTTP {status}): {message}")
            }
            Self::Unavailable {
                status: Some(status),
                message,
            } => format!("the model provider failed (HTTP {status}): {message}"),
            Self::Unavailable {
                status: None,
                message,
            } => format!("the model provider could not be reached: {message}"),
            Self::BadResponse(why) => format!("the model provider's answer is unusable: {why}"),
            Self::Refused(why) | Self::Misconfigured(why) => why.clone(),
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for ProviderError {}

/// A model provider: one attempt at a completion.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// Asks once for a completion of `messages`, within `settings.timeout`; the
    /// completion counts 1 attempt.
    async fn complete(
        &self,
        messages: &[Message],
        settings: &ModelSettings,
    ) -> Result<Completion, ProviderError>;
}

/// A call with its retries, successful or not.
#[derive(Clone, Debug, PartialEq)]
pub struct RetriedCall {
    /// The completion, or the last attempt's error.
    pub result: Result<Completion, ProviderError>,
    /// Attempts made.
    pub attempts: u32,
    /// Time spent in attempts, without the waits between them.
    pub provider_latency: Duration,
}

/// Asks `provider` for a completion, retrying transient failures (see
/// [`call_with_retries`]); the error is the last attempt's.
pub async fn complete_with_retries(
    provider: &dyn Provider,
    messages: &[Message],
    settings: &ModelSettings,
) -> Result<Completion, ProviderError> {
    call_with_retries(provider, messages, settings).await.result
}

/// Asks `provider` for a completion in at most `settings.max_attempts` attempts, each
/// cut off after `settings.timeout`. Only [retryable](ProviderError::is_retryable)
/// failures are retried, after [`wait_before_retry`].
pub async fn call_with_retries(
    provider: &dyn Provider,
    messages: &[Message],
    settings: &ModelSettings,
) -> RetriedCall {
    let max_attempts = settings.max_attempts.max(1);
    let mut provider_latency = Duration::ZERO;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let started = Instant::now();
        let result =
            match tokio::time::timeout(settings.timeout, provider.complete(messages, settings))
                .await
            {
                Ok(result) => result,
                Err(_) => Err(ProviderError::Timeout),
            };
        provider_latency += started.elapsed();
        let error = match result {
            Ok(completion) => {
                return RetriedCall {
                    result: Ok(Completion {
                        attempts,
                        provider_latency,
                        ..completion
                    }),
                    attempts,
                    provider_latency,
                }
            }
            Err(error) => error,
        };
        let wait = (attempts < max_attempts)
            .then(|| wait_before_retry(&error, settings.initial_backoff, attempts, rand::random()))
            .flatten();
        let Some(wait) = wait else {
            return RetriedCall {
                result: Err(error),
                attempts,
                provider_latency,
            };
        };
        tracing::debug!(
            code = error.code(),
            attempts,
            ?wait,
            "retrying a model call"
        );
        tokio::time::sleep(wait).await;
    }
}

/// The wait before retry number `retry` (1 for the first) after `error`, or `None` when
/// there is to be no retry: the error is not retryable, or a rate limit asks for a wait
/// longer than [`MAX_BACKOFF`] (retrying sooner would only be refused again). A rate
/// limit's `Retry-After` within the cap is the wait; otherwise [`backoff`].
pub fn wait_before_retry(
    error: &ProviderError,
    initial: Duration,
    retry: u32,
    unit: f64,
) -> Option<Duration> {
    match error {
        ProviderError::RateLimited {
            retry_after: Some(after),
        } => (*after <= MAX_BACKOFF).then_some(*after),
        error if error.is_retryable() => Some(backoff(initial, retry, unit)),
        _ => None,
    }
}

/// Exponential backoff with jitter: `initial` doubled for each retry after the first,
/// at most [`MAX_BACKOFF`], then between half of that and all of it by `unit` (a random
/// number in `[0, 1)`).
pub fn backoff(initial: Duration, retry: u32, unit: f64) -> Duration {
    let doublings = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
    let full = (initial.as_secs_f64() * 2f64.powi(doublings)).min(MAX_BACKOFF.as_secs_f64());
    Duration::from_secs_f64(full / 2.0 + full / 2.0 * unit.clamp(0.0, 1.0))
}

/// Checks that `content` is JSON when `format` asks for it.
fn check_format(content: &str, format: &ResponseFormat) -> Result<(), ProviderError> {
    if format.wants_json() && serde_json::from_str::<serde::de::IgnoredAny>(content).is_err() {
        return Err(ProviderError::BadResponse(
            "the response format asks for JSON and the answer is not JSON".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn backoff_doubles_from_the_initial_wait_up_to_the_cap() {
        let initial = Duration::from_millis(500);
        let full: Vec<_> = (1..=7).map(|retry| backoff(initial, retry, 1.0)).collect();
        assert_eq!(
            full,
            [500, 1000, 2000, 4000, 8000, 10_000, 10_000].map(Duration::from_millis)
        );
        // Jitter keeps at least half of the wait.
        assert_eq!(backoff(initial, 2, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(initial, 2, 0.5), Duration::from_millis(750));
        assert_eq!(backoff(initial, u32::MAX, 1.0), MAX_BACKOFF);
    }

    #[test]
    fn a_rate_limits_retry_after_is_the_wait_within_the_cap_only() {
        let initial = Duration::from_millis(100);
        let limited = |secs| ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(secs)),
        };
        assert_eq!(
            wait_before_retry(&limited(3), initial, 1, 0.0),
            Some(Duration::from_secs(3))
        );
        assert_eq!(wait_before_retry(&limited(60), initial, 1, 0.0), None);
        let unsaid = ProviderError::RateLimited { retry_after: None };
        assert_eq!(
            wait_before_retry(&unsaid, initial, 2, 1.0),
            Some(Duration::from_millis(200))
        );
        let rejected = ProviderError::Rejected {
            status: 400,
            message: "no".into(),
        };
        assert_eq!(wait_before_retry(&rejected, initial, 1, 0.0), None);
    }

    #[test]
    fn codes_are_stable_and_only_transient_errors_are_retryable() {
        let cases = [
            (ProviderError::Timeout, "PROVIDER_TIMEOUT", true),
            (
                ProviderError::RateLimited { retry_after: None },
                "PROVIDER_RATE_LIMITED",
                true,
            ),
            (
                ProviderError::Unavailable {
                    status: None,
                    message: "could not connect".into(),
                },
                "PROVIDER_UNAVAILABLE",
                true,
            ),
            (
                ProviderError::Rejected {
                    status: 401,
                    message: "bad key".into(),
                },
                "PROVIDER_REJECTED",
                false,
            ),
            (
                ProviderError::BadResponse("empty".into()),
                "PROVIDER_BAD_RESPONSE",
                false,
            ),
            (ProviderError::Refused("no".into()), "EGRESS_REFUSED", false),
            (
                ProviderError::Misconfigured("no".into()),
                "PROVIDER_MISCONFIGURED",
                false,
            ),
        ];
        for (error, code, retryable) in cases {
            assert_eq!(error.code(), code);
            assert_eq!(error.is_retryable(), retryable, "{code}");
        }
    }

    /// A provider that answers from a script, one entry per attempt.
    struct Scripted {
        answers: Mutex<VecDeque<Result<Completion, ProviderError>>>,
        calls: Mutex<u32>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<Completion, ProviderError>>) -> Self {
            Self {
                answers: Mutex::new(answers.into()),
                calls: Mutex::new(0),
            }
        }

        fn calls(&self) -> u32 {
            *self.calls.lock().unwrap()
        }
    }

    #[async_trait::async_trait]
    impl Provider for Scripted {
        async fn complete(
            &self,
            _messages: &[Message],
            _settings: &ModelSettings,
        ) -> Result<Completion, ProviderError> {
            *self.calls.lock().unwrap() += 1;
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .expect("the script has an answer for every attempt")
        }
    }

    fn answer(content: &str) -> Result<Completion, ProviderError> {
        Ok(Completion {
            content: content.into(),
            input_tokens: 3,
            output_tokens: 1,
            attempts: 1,
            provider_latency: Duration::ZERO,
        })
    }

    fn quick(max_attempts: u32) -> ModelSettings {
        ModelSettings {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            ..ModelSettings::new("m")
        }
    }

    fn unavailable() -> Result<Completion, ProviderError> {
        Err(ProviderError::Unavailable {
            status: Some(503),
            message: "down".into(),
        })
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_counted() {
        let provider = Scripted::new(vec![
            Err(ProviderError::Timeout),
            unavailable(),
            answer("ok"),
        ]);
        let completion = complete_with_retries(&provider, &[], &quick(3))
            .await
            .unwrap();
        assert_eq!(completion.content, "ok");
        assert_eq!(completion.attempts, 3);
        assert_eq!(provider.calls(), 3);
    }

    #[tokio::test]
    async fn the_last_error_is_returned_when_attempts_run_out() {
        let provider = Scripted::new(vec![Err(ProviderError::Timeout), unavailable()]);
        let call = call_with_retries(&provider, &[], &quick(2)).await;
        assert_eq!(call.result, unavailable());
        assert_eq!(call.attempts, 2);
        assert_eq!(provider.calls(), 2);
        // No attempts configured still makes one.
        let provider = Scripted::new(vec![unavailable()]);
        let call = call_with_retries(&provider, &[], &quick(0)).await;
        assert_eq!((call.attempts, provider.calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_rejection_is_not_retried() {
        let rejected = Err(ProviderError::Rejected {
            status: 400,
            message: "bad".into(),
        });
        let provider = Scripted::new(vec![rejected.clone(), answer("never")]);
        let call = call_with_retries(&provider, &[], &quick(3)).await;
        assert_eq!(call.result, rejected);
        assert_eq!((call.attempts, provider.calls()), (1, 1));
    }

    /// A provider that never answers.
    struct Silent;

    #[async_trait::async_trait]
    impl Provider for Silent {
        async fn complete(
            &self,
            _messages: &[Message],
            _settings: &ModelSettings,
        ) -> Result<Completion, ProviderError> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn each_attempt_is_cut_off_at_the_timeout() {
        let settings = ModelSettings {
            timeout: Duration::from_millis(20),
            ..quick(2)
        };
        let started = Instant::now();
        let call = call_with_retries(&Silent, &[], &settings).await;
        assert_eq!(call.result, Err(ProviderError::Timeout));
        assert_eq!(call.attempts, 2);
        assert!(call.provider_latency >= Duration::from_millis(40));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

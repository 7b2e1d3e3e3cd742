//! OPENAI_COMPATIBLE: `POST {baseUrl}/chat/completions` (non-streaming) on any server
//! that speaks OpenAI's chat-completions wire format, through a connection of the
//! built-in `http` app: its `baseUrl`, its `defaultHeaders`, and its `authorization`
//! secret as the Authorization header (the whole value, e.g. `Bearer sk-…`; marked
//! sensitive, and never repeated in an error message even when the provider echoes it).
//!
//! Every request goes through the egress guard. The answer is read up to
//! [`MAX_RESPONSE_BYTES`]; statuses map onto [`ProviderError`]: 429 is `RateLimited`
//! (with its `retry-after-ms` or `Retry-After` in seconds), 408 `Timeout`, 5xx
//! `Unavailable`, any other 4xx `Rejected` with the provider's `error.message`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::{
    check_format, Completion, Message, ModelSettings, Provider, ProviderError, ResponseFormat,
};
use crate::egress::{refusal_in, Egress};
use crate::engine::steps::http;
use crate::integrations::connections::OpenConnection;

/// The most of a successful answer read; a longer one is a bad response.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// The most of an error answer read (its message is all that is kept).
const MAX_ERROR_BYTES: usize = 64 << 10;
/// The most characters of a provider's error message kept.
const MAX_MESSAGE_CHARS: usize = 500;
/// What stands in for a secret a provider repeated.
const REDACTED: &str = "[redacted]";

/// A chat-completions API reached through an `http` connection.
#[derive(Debug)]
pub struct OpenAiCompatible {
    /// The egress guard's client.
    client: reqwest::Client,
    /// `{baseUrl}/chat/completions`.
    endpoint: Url,
    /// The connection's default headers and Authorization, with the JSON content type.
    headers: HeaderMap,
    /// Texts an error message must not repeat: the authorization secret, and its
    /// credential without the scheme.
    secrets: Vec<SecretString>,
}

impl OpenAiCompatible {
    /// The provider a connection of the `http` app describes. `Misconfigured` when the
    /// connection is of another app, has no http(s) `baseUrl` or has a bad header;
    /// `Refused` when `baseUrl` is an address the guard does not admit (a hostname is
    /// checked when a request resolves it).
    pub fn from_connection(
        egress: &Egress,
        connection: &OpenConnection,
    ) -> Result<Self, ProviderError> {
        let misconfigured = |why: &str| ProviderError::Misconfigured(why.to_owned());
        if connection.app_key != http::APP {
            return Err(misconfigured(
                "a model provider's connection must be of the http app",
            ));
        }
        let base = connection
            .config
            .get("baseUrl")
            .and_then(Value::as_str)
            .filter(|base| !base.is_empty())
            .ok_or_else(|| misconfigured("the model provider's connection has no baseUrl"))?;
        let endpoint = Url::parse(&format!("{}/chat/completions", base.trim_end_matches('/')))
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"))
            .ok_or_else(|| {
                misconfigured(
                    "the model provider's connection has a baseUrl that is not an http(s) URL",
                )
            })?;
        egress
            .check_url(endpoint.as_str())
            .map_err(|refused| ProviderError::Refused(refused.to_string()))?;

        let mut headers = HeaderMap::new();
        http::add_headers(&mut headers, connection.config.get("defaultHeaders"))
            .map_err(|why| ProviderError::Misconfigured(format!("defaultHeaders: {why}")))?;
        let mut secrets = Vec::new();
        if let Some(secret) = connection.secrets.get("authorization") {
            let value = secret.expose_secret();
            let mut header = HeaderValue::from_str(value).map_err(|_| {
                misconfigured("the authorization secret is not a valid header value")
            })?;
            header.set_sensitive(true);
            headers.insert(AUTHORIZATION, header);
            secrets.push(secret.clone());
            if let Some((_scheme, credential)) = value.trim().split_once(char::is_whitespace) {
                secrets.push(credential.trim().to_owned().into());
            }
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        Ok(Self {
            client: egress.client().clone(),
            endpoint,
            headers,
            secrets,
        })
    }
}

#[async_trait]
impl Provider for OpenAiCompatible {
    async fn complete(
        &self,
        messages: &[Message],
        settings: &ModelSettings,
    ) -> Result<Completion, ProviderError> {
        let started = Instant::now();
        let body = request_body(messages, settings).to_string();
        let response = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .timeout(settings.timeout)
            .body(body)
            .send()
            .await
            .map_err(|err| failure(&err))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let retry_after = retry_after(response.headers());
            let (body, _) = read_capped(response, MAX_ERROR_BYTES)
                .await
                .map_err(|err| failure(&err))?;
            return Err(error_for_status(status, retry_after, &body, &self.secrets));
        }
        let (body, whole) = read_capped(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|err| failure(&err))?;
        if !whole {
            return Err(ProviderError::BadResponse(format!(
                "the answer is larger than {} MiB",
                MAX_RESPONSE_BYTES >> 20
            )));
        }
        let mut completion = parse_completion(&body)?;
        check_format(&completion.content, &settings.response_format)?;
        completion.provider_latency = started.elapsed();
        Ok(completion)
    }
}

/// The chat-completions request for `messages` under `settings`.
fn request_body(messages: &[Message], settings: &ModelSettings) -> Value {
    let mut body = json!({
        "model": settings.model,
        "messages": messages,
        "stream": false,
    });
    if let Some(temperature) = settings.temperature {
        body["temperature"] = json!(temperature);
    }
    if let Some(max_tokens) = settings.max_tokens {
        body["max_tokens"] = json!(max_tokens);
    }
    match &settings.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::Json => body["response_format"] = json!({ "type": "json_object" }),
        ResponseFormat::JsonSchema { name, schema } => {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": { "name": name, "schema": schema, "strict": true },
            });
        }
    }
    body
}

/// A request that got no answer, in words that carry no URL, header or secret.
fn failure(err: &reqwest::Error) -> ProviderError {
    if let Some(refused) = refusal_in(err) {
        ProviderError::Refused(refused.to_string())
    } else if err.is_timeout() {
        ProviderError::Timeout
    } else if err.is_connect() {
        ProviderError::Unavailable {
            status: None,
            message: "could not connect".into(),
        }
    } else if err.is_redirect() {
        ProviderError::BadResponse("the provider redirected too often".into())
    } else if err.is_builder() {
        ProviderError::Misconfigured("the model provider's request is not valid".into())
    } else {
        ProviderError::Unavailable {
            status: None,
            message: "the request failed".into(),
        }
    }
}

/// When a rate-limited answer says to come back: `retry-after-ms`, else `Retry-After`
/// in seconds (an HTTP date is not read).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| *n >= 0.0)
    };
    number("retry-after-ms")
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
        .or_else(|| number("retry-after").and_then(|s| Duration::try_from_secs_f64(s).ok()))
}

/// Reads a body up to `limit` bytes; `false` when it was longer and cut.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, false));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, true))
}

/// The error a status outside 2xx stands for. The provider's message is taken from an
/// OpenAI error body (`{"error": {"message": …}}`), with `secrets` redacted, truncated.
fn error_for_status(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    secrets: &[SecretString],
) -> ProviderError {
    let message = || {
        let message = provider_message(body).unwrap_or_else(|| {
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("no details")
                .to_owned()
        });
        truncate(&redact(&message, secrets), MAX_MESSAGE_CHARS)
    };
    match status {
        429 => ProviderError::RateLimited { retry_after },
        408 => ProviderError::Timeout,
        500..=599 => ProviderError::Unavailable {
            status: Some(status),
            message: message(),
        },
        400..=499 => ProviderError::Rejected {
            status,
            message: message(),
        },
        _ => ProviderError::BadResponse(format!("unexpected HTTP {status}")),
    }
}

/// The message of an OpenAI error body (`error.message`, or `error` as a string).
fn provider_message(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let message = match body.get("error")? {
        Value::String(message) => message,
        error => error.get("message")?.as_str()?,
    };
    Some(message.to_owned())
}

/// `text` with every secret replaced (a secret shorter than 4 characters is left: it
/// would garble the text and hides nothing).
fn redact(text: &str, secrets: &[SecretString]) -> String {
    secrets
        .iter()
        .map(ExposeSecret::expose_secret)
        .filter(|secret| secret.len() >= 4)
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret, REDACTED)
        })
}

/// At most `max` characters of `text`, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The completion in a chat-completions answer: `choices[0].message.content`, and the
/// `usage` token counts (0 when absent).
fn parse_completion(body: &[u8]) -> Result<Completion, ProviderError> {
    let bad = |why: &str| ProviderError::BadResponse(why.to_owned());
    let body: Value = serde_json::from_slice(body).map_err(|_| bad("the answer is not JSON"))?;
    let message = body
        .pointer("/choices/0/message")
        .ok_or_else(|| bad("the answer has no choices[0].message"))?;
    let content = match message.get("content") {
        Some(Value::String(content)) => content.clone(),
        _ => {
            return Err(match message.get("refusal").and_then(Value::as_str) {
                Some(refusal) => ProviderError::BadResponse(format!(
                    "the model refused: {}",
                    truncate(refusal, MAX_MESSAGE_CHARS)
                )),
                None => bad("the answer has no content"),
            })
        }
    };
    let tokens = |name: &str| {
        body.get("usage")
            .and_then(|usage| usage.get(name))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    Ok(Completion {
        content,
        input_tokens: tokens("prompt_tokens"),
        output_tokens: tokens("completion_tokens"),
        attempts: 1,
        provider_latency: Duration::ZERO,
    })
}

#[cfg(test)]
mod tests {
    use super::super::ChatRole;
    use super::*;

    fn settings(response_format: ResponseFormat) -> ModelSettings {
        ModelSettings {
            response_format,
            ..ModelSettings::new("gpt-test")
        }
    }

    #[test]
    fn a_text_request_names_the_model_and_messages_only() {
        let messages = [
            Message::new(ChatRole::System, "Be brief."),
            Message::new(ChatRole::User, "Hi"),
        ];
        assert_eq!(
            request_body(&messages, &settings(ResponseFormat::Text)),
            json!({
                "model": "gpt-test",
                "messages": [
                    { "role": "system", "content": "Be brief." },
                    { "role": "user", "content": "Hi" },
                ],
                "stream": false,
            })
        );
    }

    #[test]
    fn json_formats_and_sampling_settings_are_in_the_request() {
        let json_mode = ModelSettings {
            temperature: Some(0.25),
            max_tokens: Some(64),
            ..settings(ResponseFormat::Json)
        };
        let body = request_body(&[], &json_mode);
        assert_eq!(body["temperature"], json!(0.25));
        assert_eq!(body["max_tokens"], json!(64));
        assert_eq!(body["response_format"], json!({ "type": "json_object" }));
        let schema = json!({ "type": "object", "properties": { "a": { "type": "string" } } });
        let body = request_body(
            &[],
            &settings(ResponseFormat::JsonSchema {
                name: "answer".into(),
                schema: schema.clone(),
            }),
        );
        assert_eq!(
            body["response_format"],
            json!({ "type": "json_schema",
                    "json_schema": { "name": "answer", "schema": schema, "strict": true } })
        );
        assert!(body.get("temperature").is_none());
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    reqwest::header::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn retry_after_is_read_in_milliseconds_or_seconds() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[
                ("retry-after", "2"),
                ("retry-after-ms", "150.5")
            ])),
            Some(Duration::from_micros(150_500))
        );
        for unread in ["Wed, 21 Oct 2015 07:28:00 GMT", "-1", "1e400"] {
            let map = HeaderMap::from_iter([(
                reqwest::header::RETRY_AFTER,
                HeaderValue::from_str(unread).unwrap(),
            )]);
            assert_eq!(retry_after(&map), None, "{unread}");
        }
    }

    fn openai_error(message: &str) -> Vec<u8> {
        json!({ "error": { "message": message, "type": "invalid_request_error", "code": null } })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn statuses_map_onto_errors() {
        let after = Some(Duration::from_secs(1));
        assert_eq!(
            error_for_status(429, after, b"", &[]),
            ProviderError::RateLimited { retry_after: after }
        );
        assert_eq!(
            error_for_status(408, None, b"", &[]),
            ProviderError::Timeout
        );
        assert_eq!(
            error_for_status(503, None, &openai_error("overloaded"), &[]),
            ProviderError::Unavailable {
                status: Some(503),
                message: "overloaded".into()
            }
        );
        assert_eq!(
            error_for_status(400, None, &openai_error("max_tokens is too large"), &[]),
            ProviderError::Rejected {
                status: 400,
                message: "max_tokens is too large".into()
            }
        );
        // A body that is not an OpenAI error is not repeated.
        assert_eq!(
            error_for_status(404, None, b"<html>secret internals</html>", &[]),
            ProviderError::Rejected {
                status: 404,
                message: "Not Found".into()
            }
        );
        assert_eq!(
            error_for_status(400, None, br#"{"error": "bad model"}"#, &[]),
            ProviderError::Rejected {
                status: 400,
                message: "bad model".into()
            }
        );
        assert!(matches!(
            error_for_status(302, None, b"", &[]),
            ProviderError::BadResponse(_)
        ));
    }

    #[test]
    fn a_providers_message_is_truncated_and_never_repeats_the_key() {
        let long = "é".repeat(2000);
        let ProviderError::Rejected { message, .. } =
            error_for_status(400, None, &openai_error(&long), &[])
        else {
            panic!("not a rejection");
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));

        let secrets = [
            SecretString::from("Bearer sk-live-123456".to_owned()),
            SecretString::from("sk-live-123456".to_owned()),
        ];
        let echoed = openai_error("Incorrect API key provided: sk-live-123456.");
        let error = error_for_status(401, None, &echoed, &secrets);
        assert_eq!(
            error.message(),
            "the model provider rejected the request (HTTP 401): Incorrect API key provided: [redacted]."
        );
    }

    #[test]
    fn answers_are_parsed_for_content_and_usage() {
        let answer = json!({
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "Hello!" } }],
            "usage": { "prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15 },
        });
        let completion = parse_completion(answer.to_string().as_bytes()).unwrap();
        assert_eq!(completion.content, "Hello!");
        assert_eq!((completion.input_tokens, completion.output_tokens), (12, 3));

        let without_usage = json!({ "choices": [{ "message": { "content": "" } }] });
        let completion = parse_completion(without_usage.to_string().as_bytes()).unwrap();
        assert_eq!((completion.input_tokens, completion.output_tokens), (0, 0));

        let unusable = [
            json!({ "choices": [] }).to_string(),
            json!({ "choices": [{ "message": { "content": null } }] }).to_string(),
            json!({ "choices": [{ "message": { "content": null, "refusal": "I can't." } }] })
                .to_string(),
            "{\"choices\": [".to_owned(),
        ];
        for body in unusable {
            let err = parse_completion(body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "PROVIDER_BAD_RESPONSE", "{body}");
        }
    }

    fn connection(app_key: &str, config: Value) -> OpenConnection {
        OpenConnection {
            app_key: app_key.into(),
            config,
            secrets: [(
                "authorization".to_owned(),
                "Bearer sk-abc-123".to_owned().into(),
            )]
            .into(),
        }
    }

    #[test]
    fn a_connection_gives_the_endpoint_and_headers() {
        let egress = Egress::new(vec![]).unwrap();
        let provider = OpenAiCompatible::from_connection(
            &egress,
            &connection(
                "http",
                json!({ "baseUrl": "https://llm.example.com/v1/",
                        "defaultHeaders": { "OpenAI-Organization": "org-1",
                                            "Content-Type": "text/plain" } }),
            ),
        )
        .unwrap();
        assert_eq!(
            provider.endpoint.as_str(),
            "https://llm.example.com/v1/chat/completions"
        );
        assert_eq!(provider.headers["openai-organization"], "org-1");
        assert_eq!(provider.headers[CONTENT_TYPE], "application/json");
        assert_eq!(provider.headers[AUTHORIZATION], "Bearer sk-abc-123");
        assert!(provider.headers[AUTHORIZATION].is_sensitive());
        assert!(!format!("{provider:?}").contains("sk-abc-123"));
    }

    #[test]
    fn a_connection_that_cannot_reach_a_provider_is_refused() {
        let egress = Egress::new(vec![]).unwrap();
        let error = |app: &str, config: Value| {
            OpenAiCompatible::from_connection(&egress, &connection(app, config))
                .unwrap_err()
                .code()
        };
        let misconfigured = "PROVIDER_MISCONFIGURED";
        assert_eq!(error("http", json!({})), misconfigured);
        assert_eq!(error("http", json!({ "baseUrl": "" })), misconfigured);
        assert_eq!(
            error("http", json!({ "baseUrl": "ftp://llm.example.com" })),
            misconfigured
        );
        assert_eq!(
            error("slack", json!({ "baseUrl": "https://llm.example.com" })),
            misconfigured
        );
        assert_eq!(
            error("http", json!({ "baseUrl": "http://169.254.169.254/v1" })),
            "EGRESS_REFUSED"
        );
    }
}

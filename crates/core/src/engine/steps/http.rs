//! HTTP: one request, `{url, method, headers, body, timeoutMs, failOnStatus}`, through
//! the egress guard (loopback, private, link-local and metadata addresses are refused
//! unless `TRELLIS_EGRESS_ALLOW` lists them, after DNS and on redirects). The output is
//! `{status, headers, body}`: the body as JSON when the response says it is JSON, text
//! otherwise, at most 1 MiB (`bodyTruncated` when cut). A status outside 2xx fails the
//! step unless `failOnStatus` is false; a 4xx other than 408, 425 and 429 is not
//! retried, nor is a bad config or a refused address. The call runs outside any transaction: the
//! executor starts the step, commits, calls, and records the result in a new one, so a
//! crash mid-call repeats the call (at least once).

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{StepInput, StepKind, StepResult};
use crate::egress::refusal_in;

/// The longest a call may take, and the default.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a response body kept in the output.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How long a call of this config may take, from connecting to the end of the body:
/// `timeoutMs`, 30 s by default, at most 300 s.
pub fn timeout_of(config: &Value) -> Duration {
    config
        .get("timeoutMs")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
        .min(MAX_TIMEOUT)
}

pub struct Http;

impl StepKind for Http {
    async fn execute(&self, input: &StepInput<'_>) -> StepResult {
        let config = input.config;
        // A bad config or a refused address fails the same way every time: no retry.
        let fail =
            |message: String| StepResult::Failed(json!({ "message": message, "retryable": false }));
        let Some(url) = config.get("url").and_then(Value::as_str) else {
            return fail("the step has no url".into());
        };
        let method = config
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or("GET");
        let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
            return fail(format!("{method} is not an HTTP method"));
        };
        if let Err(refused) = input.egress.check_url(url) {
            return fail(refused.to_string());
        }
        let timeout = timeout_of(config);
        let mut request = input.egress.client().request(method, url).timeout(timeout);
        if let Some(headers) = config.get("headers").and_then(Value::as_object) {
            for (name, value) in headers {
                if let Some(value) = value.as_str() {
                    request = request.header(name, value);
                }
            }
        }
        request = match config.get("body") {
            None | Some(Value::Null) => request,
            Some(Value::String(text)) => request.body(text.clone()),
            Some(other) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(other.to_string()),
        };
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                return match refusal_in(&err) {
                    Some(refused) => fail(refused.to_string()),
                    None => StepResult::Failed(json!({
                        "message": format!("the request failed: {err}"),
                        "code": if err.is_timeout() { "TIMEOUT" } else { "REQUEST_FAILED" },
                    })),
                }
            }
        };
        let status = response.status();
        let mut headers = Map::new();
        for (name, value) in response.headers().iter().take(100) {
            if let Ok(value) = value.to_str() {
                headers.insert(name.as_str().to_owned(), Value::String(value.to_owned()));
            }
        }
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json"));
        let mut bytes = Vec::new();
        let mut truncated = false;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_BODY_BYTES - bytes.len();
                    if chunk.len() > room {
                        bytes.extend_from_slice(&chunk[..room]);
                        truncated = true;
                        break;
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(err) => {
                    return StepResult::Failed(json!({
                        "message": format!("reading the response failed: {err}"),
                        "code": if err.is_timeout() { "TIMEOUT" } else { "REQUEST_FAILED" },
                    }))
                }
            }
        }
        let body = match (is_json && !truncated)
            .then(|| serde_json::from_slice::<Value>(&bytes).ok())
            .flatten()
        {
            Some(json) => json,
            None => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        };
        let mut output = json!({ "status": status.as_u16(), "headers": headers, "body": body });
        if truncated {
            output["bodyTruncated"] = Value::Bool(true);
        }
        let fail_on_status = config
            .get("failOnStatus")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if fail_on_status && !status.is_success() {
            output["message"] = Value::String(format!("HTTP {status}"));
            // A client error other than a timeout or a rate limit answers the same way
            // again.
            let transient = matches!(status.as_u16(), 408 | 425 | 429);
            if status.is_client_error() && !transient {
                output["retryable"] = Value::Bool(false);
            }
            return StepResult::Failed(output);
        }
        StepResult::Done(output)
    }
}

//! HTTP: one request through the egress guard (loopback, private, link-local and
//! metadata addresses are refused unless `TRELLIS_EGRESS_ALLOW` lists them, after DNS
//! and on redirects). Two shapes of config describe it, and [`prepare`] builds the
//! request from either:
//!
//! - an HTTP step: `{url, method, query, headers, bodyType, body, timeoutMs,
//!   failOnStatus}`;
//! - an ACTION step bound to the built-in `http` app's `request` action (the executor
//!   runs those as HTTP steps): its input `{method, path, query, headers, bodyType,
//!   body, responseType, timeoutMs, failOnErrorStatus}`.
//!
//! With the step's connection of the `http` app, a `url` or `path` that is not an
//! absolute http(s) URL is appended to the connection's `baseUrl`; its
//! `defaultHeaders` are sent, then its `authorization` secret as the Authorization
//! header (marked sensitive: never logged, never in the step's input or output), and
//! the step's own headers override both; its `timeoutMs` is the timeout when the step
//! names none; `followRedirects: false` returns a 3xx as the answer.
//!
//! The output is `{status, headers, body, durationMs}`: the body as JSON when the
//! response says it is JSON (or `responseType` is `json`), text otherwise, at most
//! 1 MiB (`bodyTruncated` when cut). A status outside 2xx fails the step unless
//! `failOnStatus` (or `failOnErrorStatus`) is false; a 4xx other than 408, 425 and 429
//! is not retried, nor is a bad config or a refused address. The call runs outside any
//! transaction: the executor starts the step, commits, calls, and records the result
//! in a new one, so a crash mid-call repeats the call (at least once).

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};

use super::{StepInput, StepKind, StepResult};
use crate::egress::{refusal_in, Egress};
use crate::integrations::connections::OpenConnection;

/// The longest a call may take, and the default.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a response body kept in the output.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// The most response headers kept in the output.
const MAX_HEADERS: usize = 100;

/// The app whose connections HTTP steps call through.
pub const APP: &str = "http";

/// How long a call of this config may take, from connecting to the end of the body:
/// `timeoutMs`, else the connection's `timeoutMs`, else 30 s; at most 300 s.
pub fn timeout_of(config: &Value, connection: Option<&OpenConnection>) -> Duration {
    let millis = |v: &Value| v.get("timeoutMs").and_then(Value::as_u64);
    millis(config)
        .or_else(|| connection.and_then(|c| millis(&c.config)))
        .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
        .min(MAX_TIMEOUT)
}

/// How the response body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseType {
    /// JSON when the Content-Type says so, text otherwise.
    Auto,
    /// JSON whatever the Content-Type says (text when it does not parse).
    Json,
    /// Always text.
    Text,
}

/// A request ready to send, and how to read its answer.
pub struct Prepared {
    pub request: reqwest::RequestBuilder,
    pub response_type: ResponseType,
    pub fail_on_status: bool,
}

/// Builds the request a config describes (an HTTP step's or the http app's `request`
/// action's input), through `connection` when the step has one. An error is a bad
/// config or an address the guard refuses: it fails the same way every time.
pub fn prepare(
    config: &Value,
    connection: Option<&OpenConnection>,
    egress: &Egress,
) -> Result<Prepared, String> {
    if connection.is_some_and(|c| c.app_key != APP) {
        return Err(format!("the step's connection is not of the {APP} app"));
    }
    // The action's input names a `path`; an HTTP step a `url`.
    let (target, is_action) = match (config.get("url"), config.get("path")) {
        (Some(Value::String(url)), _) => (url.as_str(), false),
        (None, Some(Value::String(path))) => (path.as_str(), true),
        _ => return Err("the step has no url".into()),
    };
    let method = config
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("GET");
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("{method} is not an HTTP method"))?;
    let url = url_of(target, config.get("query"), connection)?;
    egress.check_url(url.as_str()).map_err(|r| r.to_string())?;

    let mut headers = HeaderMap::new();
    if let Some(conn) = connection {
        add_headers(&mut headers, conn.config.get("defaultHeaders"))?;
        if let Some(secret) = conn.secrets.get("authorization") {
            let mut value = HeaderValue::from_str(secret.expose_secret())
                .map_err(|_| "the authorization secret is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
    }
    add_headers(&mut headers, config.get("headers"))?;
    let body = match method {
        reqwest::Method::GET | reqwest::Method::HEAD => None,
        _ => body_of(config, is_action)?,
    };
    let follow = connection
        .and_then(|c| c.config.get("followRedirects"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let client = if follow {
        egress.client()
    } else {
        egress.client_without_redirects()
    };
    let mut request = client
        .request(method, url)
        .timeout(timeout_of(config, connection));
    if let Some((bytes, content_type)) = body {
        if let Some(content_type) = content_type.filter(|_| !headers.contains_key(CONTENT_TYPE)) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        request = request.body(bytes);
    }
    let response_type = match config.get("responseType").and_then(Value::as_str) {
        None | Some("auto") => ResponseType::Auto,
        Some("json") => ResponseType::Json,
        Some("text") => ResponseType::Text,
        Some(other) => return Err(format!("responseType {other:?} is not auto, json or text")),
    };
    let fail_on_status = config
        .get("failOnStatus")
        .or_else(|| config.get("failOnErrorStatus"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Ok(Prepared {
        request: request.headers(headers),
        response_type,
        fail_on_status,
    })
}

/// Whether `target` is an absolute http(s) URL; anything else is a path under the
/// connection's `baseUrl`.
fn is_absolute(target: &str) -> bool {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The URL of a request: `target` as it is when absolute, else appended to the
/// connection's `baseUrl` (always after a `/` or `?`, so a path never changes the
/// host); then the `query` parameters.
fn url_of(
    target: &str,
    query: Option<&Value>,
    connection: Option<&OpenConnection>,
) -> Result<reqwest::Url, String> {
    let joined;
    let url = if is_absolute(target) {
        target
    } else {
        let base = connection
            .and_then(|c| c.config.get("baseUrl"))
            .and_then(Value::as_str)
            .filter(|b| !b.is_empty())
            .ok_or("a path needs an absolute http(s) URL, or a connection of the http app with a baseUrl")?;
        let base = base.trim_end_matches('/');
        joined = if target.starts_with('/') || target.starts_with('?') {
            format!("{base}{target}")
        } else {
            format!("{base}/{target}")
        };
        &joined
    };
    let mut url = reqwest::Url::parse(url).map_err(|e| format!("{url} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{url} is not an http(s) URL"));
    }
    match query {
        None | Some(Value::Null) => {}
        Some(Value::Object(params)) => {
            let pairs = pairs(params, "query")?;
            if !pairs.is_empty() {
                url.query_pairs_mut().extend_pairs(pairs);
            }
        }
        Some(_) => return Err("query is an object of parameters".into()),
    }
    Ok(url)
}

/// The parameters of an object (a query, a form body): a string, number or boolean is
/// one, a list of them repeats the name, `null` is left out.
fn pairs(params: &Map<String, Value>, what: &str) -> Result<Vec<(String, String)>, String> {
    let scalar = |name: &str, value: &Value| match value {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Null => Ok(None),
        _ => Err(format!(
            "{what} parameter {name} is a string, number, boolean or a list of them"
        )),
    };
    let mut out = Vec::new();
    for (name, value) in params {
        match value {
            Value::Array(items) => {
                for item in items {
                    if let Some(item) = scalar(name, item)? {
                        out.push((name.clone(), item));
                    }
                }
            }
            other => {
                if let Some(value) = scalar(name, other)? {
                    out.push((name.clone(), value));
                }
            }
        }
    }
    Ok(out)
}

/// Adds (or replaces) the headers of an object of strings.
pub(crate) fn add_headers(headers: &mut HeaderMap, from: Option<&Value>) -> Result<(), String> {
    let Some(from) = from.and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, value) in from {
        let Some(value) = value.as_str() else {
            continue;
        };
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name} is not a header name"))?;
        // The value is not repeated in the error: it may be a credential.
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("header {name} has a bad value"))?;
        headers.insert(name, value);
    }
    Ok(())
}

/// The encoded body and its Content-Type, by `bodyType`: `json`, `form`
/// (urlencoded), `text` (as given). Without one an action's body is JSON, and an HTTP
/// step's string body is sent as it is, any other as JSON.
fn body_of(
    config: &Value,
    is_action: bool,
) -> Result<Option<(String, Option<&'static str>)>, String> {
    const JSON: &str = "application/json";
    let body = match config.get("body") {
        None | Some(Value::Null) => return Ok(None),
        Some(body) => body,
    };
    let body_type = config.get("bodyType").and_then(Value::as_str);
    Ok(Some(match (body_type, body) {
        (Some("json"), body) => (body.to_string(), Some(JSON)),
        (Some("form"), Value::Object(fields)) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.extend_pairs(pairs(fields, "form")?);
            (form.finish(), Some("application/x-www-form-urlencoded"))
        }
        (Some("form"), _) => return Err("a form body is an object of fields".into()),
        (Some("text"), Value::String(text)) => (text.clone(), Some("text/plain; charset=utf-8")),
        (Some("text"), other) => (other.to_string(), Some("text/plain; charset=utf-8")),
        (Some(other), _) => return Err(format!("bodyType {other:?} is not json, form or text")),
        (None, Value::String(text)) if !is_action => (text.clone(), None),
        (None, body) => (body.to_string(), Some(JSON)),
    }))
}

pub struct Http;

impl StepKind for Http {
    async fn execute(&self, input: &StepInput<'_>) -> StepResult {
        // A bad config or a refused address fails the same way every time: no retry.
        let fail =
            |message: String| StepResult::Failed(json!({ "message": message, "retryable": false }));
        let prepared = match prepare(input.config, input.connection, input.egress) {
            Ok(prepared) => prepared,
            Err(message) => return fail(message),
        };
        let started = Instant::now();
        let mut response = match prepared.request.send().await {
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
        for (name, value) in response.headers() {
            let Ok(value) = value.to_str() else { continue };
            let full = headers.len() >= MAX_HEADERS;
            match headers.get_mut(name.as_str()) {
                // A repeated header is joined with ", ".
                Some(Value::String(seen)) => {
                    seen.push_str(", ");
                    seen.push_str(value);
                }
                _ if full => {}
                _ => {
                    headers.insert(name.as_str().to_owned(), Value::String(value.to_owned()));
                }
            }
        }
        let is_json = match prepared.response_type {
            ResponseType::Json => true,
            ResponseType::Text => false,
            ResponseType::Auto => response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.contains("json")),
        };
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
        let duration_ms = started.elapsed().as_millis() as u64;
        let body = match (is_json && !truncated)
            .then(|| serde_json::from_slice::<Value>(&bytes).ok())
            .flatten()
        {
            Some(json) => json,
            None => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        };
        let mut output = json!({
            "status": status.as_u16(),
            "headers": headers,
            "body": body,
            "durationMs": duration_ms,
        });
        if truncated {
            output["bodyTruncated"] = Value::Bool(true);
        }
        if prepared.fail_on_status && !status.is_success() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(config: Value, authorization: Option<&str>) -> OpenConnection {
        OpenConnection {
            app_key: APP.into(),
            config,
            secrets: authorization
                .map(|a| ("authorization".to_owned(), a.to_owned().into()))
                .into_iter()
                .collect(),
        }
    }

    fn egress() -> Egress {
        Egress::new(vec!["127.0.0.1/32".parse().unwrap()]).unwrap()
    }

    fn built(config: &Value, conn: Option<&OpenConnection>) -> reqwest::Request {
        prepare(config, conn, &egress())
            .unwrap()
            .request
            .build()
            .unwrap()
    }

    #[test]
    fn paths_join_the_base_url_and_absolute_urls_stay() {
        let conn = connection(json!({ "baseUrl": "https://api.example.com/v1/" }), None);
        for (target, expected) in [
            ("/users/42", "https://api.example.com/v1/users/42"),
            ("users/42?x=1", "https://api.example.com/v1/users/42?x=1"),
            (
                "@evil.example/x",
                "https://api.example.com/v1/@evil.example/x",
            ),
            ("https://other.example/a", "https://other.example/a"),
            ("HTTP://other.example/a", "http://other.example/a"),
        ] {
            let request = built(&json!({ "url": target }), Some(&conn));
            assert_eq!(request.url().as_str(), expected, "{target}");
        }
        let err = prepare(&json!({ "url": "/x" }), None, &egress())
            .err()
            .unwrap();
        assert!(err.contains("baseUrl"), "{err}");
        let err = prepare(&json!({ "url": "ftp://x/y" }), None, &egress())
            .err()
            .unwrap();
        assert!(err.contains("baseUrl"), "{err}");
        // An absolute URL is still checked by the guard.
        let err = prepare(
            &json!({ "url": "http://10.0.0.1/" }),
            Some(&conn),
            &egress(),
        )
        .err()
        .unwrap();
        assert!(err.contains("egress guard refused"), "{err}");
    }

    #[test]
    fn step_headers_override_defaults_and_the_secret_is_sensitive() {
        let conn = connection(
            json!({ "baseUrl": "https://api.example.com",
                    "defaultHeaders": { "Accept": "text/csv", "X-Team": "core" } }),
            Some("Bearer s3cret"),
        );
        let request = built(
            &json!({ "url": "/x", "headers": { "accept": "application/json" } }),
            Some(&conn),
        );
        let headers = request.headers();
        assert_eq!(headers.get_all("accept").iter().count(), 1);
        assert_eq!(headers["accept"], "application/json");
        assert_eq!(headers["x-team"], "core");
        assert_eq!(headers[AUTHORIZATION], "Bearer s3cret");
        assert!(headers[AUTHORIZATION].is_sensitive());
        assert!(!format!("{request:?}").contains("s3cret"));
    }

    #[test]
    fn the_actions_input_maps_onto_the_same_request() {
        let conn = connection(json!({ "baseUrl": "https://api.example.com" }), None);
        let request = built(
            &json!({ "method": "post", "path": "/search", "bodyType": "form",
                    "query": { "tag": ["a", "b"], "n": 2, "skip": null },
                    "body": { "q": "x y", "page": 1 } }),
            Some(&conn),
        );
        assert_eq!(request.method(), reqwest::Method::POST);
        assert_eq!(
            request.url().as_str(),
            "https://api.example.com/search?tag=a&tag=b&n=2"
        );
        assert_eq!(
            request.headers()[CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        let body = request.body().unwrap().as_bytes().unwrap();
        assert_eq!(body, b"q=x+y&page=1");
        // An action's string body is JSON unless it says text; a step's is text.
        let json_body = built(
            &json!({ "method": "PUT", "path": "https://api.example.com/", "body": "hi" }),
            None,
        );
        assert_eq!(json_body.body().unwrap().as_bytes().unwrap(), b"\"hi\"");
        let text = built(
            &json!({ "method": "PUT", "url": "https://api.example.com/", "body": "hi" }),
            None,
        );
        assert_eq!(text.body().unwrap().as_bytes().unwrap(), b"hi");
        // GET sends no body.
        let get = built(
            &json!({ "method": "GET", "path": "https://api.example.com/", "body": { "a": 1 } }),
            None,
        );
        assert!(get.body().is_none());
    }

    #[test]
    fn the_connections_timeout_is_the_default() {
        let conn = connection(json!({ "timeoutMs": 1234 }), None);
        assert_eq!(
            timeout_of(&json!({}), Some(&conn)),
            Duration::from_millis(1234)
        );
        assert_eq!(
            timeout_of(&json!({ "timeoutMs": 50 }), Some(&conn)),
            Duration::from_millis(50)
        );
        assert_eq!(timeout_of(&json!({}), None), DEFAULT_TIMEOUT);
    }
}

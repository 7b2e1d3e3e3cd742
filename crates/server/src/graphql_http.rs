//! GraphQL over HTTP, as its specification and the `graphql-http` audits say: reading a
//! request from a `POST` body or a `GET` query string, and writing the response in the
//! media type the client accepts.
//!
//! - `POST` bodies must be `application/json` (UTF-8). Anything else is 415, which also
//!   keeps a cross-site form or `text/plain` post from running a mutation.
//! - A body that is not JSON, or a request without a `query` string, is 400.
//! - With `Accept: application/graphql-response+json`, a request that fails before
//!   execution (parse or validation errors) is 400 and carries no `data`; with
//!   `application/json` (or no `Accept`) it is 200, as legacy clients expect.
//! - A request may name a trusted document instead of sending its text: `documentId`
//!   (`sha256:<hex>`) or Apollo's `extensions.persistedQuery`. Both reach the single
//!   door as `persistedQuery`, where `trellis_graphql::trusted` decides.

use std::collections::HashMap;

use async_graphql::{BatchRequest, BatchResponse, Request, Variables};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// `application/graphql-response+json`, the specification's media type.
pub const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// The media type a response is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    /// `application/graphql-response+json`: status codes follow the outcome.
    GraphqlResponse,
    /// `application/json`: 200 for every well-formed request, as legacy clients expect.
    Json,
}

impl Media {
    /// The media type the client accepts, `None` when it accepts neither (406).
    pub fn negotiate(headers: &HeaderMap) -> Option<Self> {
        let Some(accept) = headers.get(header::ACCEPT) else {
            return Some(Self::Json);
        };
        let accept = accept.to_str().ok()?;
        let types = accept.split(',').map(|part| {
            part.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        let mut media = None;
        for ty in types {
            match ty.as_str() {
                GRAPHQL_RESPONSE_JSON => return Some(Self::GraphqlResponse),
                "application/json" | "application/*" | "*/*" | "" => media = Some(Self::Json),
                _ => {}
            }
        }
        media
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        })
    }
}

/// Why a request could not be read; each becomes an HTTP status and an error body.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "BAD_USER_INPUT",
            message: message.into(),
        }
    }

    /// The refusal as a response in `media`.
    pub fn into_response(self, media: Media) -> Response {
        error_response(media, self.status, self.code, &self.message)
    }
}

/// A response with one error and no `data`.
pub fn error_response(media: Media, status: StatusCode, code: &str, message: &str) -> Response {
    let body =
        serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (
        status,
        [(header::CONTENT_TYPE, media.content_type())],
        body.to_string(),
    )
        .into_response()
}

/// One request as it comes over the wire.
#[derive(Deserialize)]
struct WireRequest {
    #[serde(default)]
    query: Option<String>,
    #[serde(default, rename = "operationName")]
    operation_name: Option<String>,
    /// `null`, absent or an object; anything else does not deserialize.
    #[serde(default)]
    variables: Variables,
    #[serde(default)]
    extensions: Option<HashMap<String, serde_json::Value>>,
    /// A trusted document's id, `sha256:<hex>` (or the bare hex).
    #[serde(default, rename = "documentId")]
    document_id: Option<String>,
}

impl WireRequest {
    fn into_request(self) -> Result<Request, Refusal> {
        let mut extensions = self.extensions.unwrap_or_default();
        if let Some(id) = self.document_id {
            let hash = id.strip_prefix("sha256:").unwrap_or(&id);
            extensions.insert(
                "persistedQuery".into(),
                serde_json::json!({ "version": 1, "sha256Hash": hash }),
            );
        }
        let persisted = extensions.contains_key("persistedQuery");
        let query = match self.query {
            Some(query) if !query.is_empty() => query,
            // The text comes from the manifest of trusted documents.
            _ if persisted => String::new(),
            _ => {
                return Err(Refusal::bad_request(
                    "the request needs a `query` string or a `documentId`",
                ))
            }
        };
        let mut request = Request::new(query).variables(self.variables);
        request.operation_name = self.operation_name;
        if let Some(persisted) = extensions.remove("persistedQuery") {
            let value = async_graphql::Value::from_json(persisted)
                .map_err(|err| Refusal::bad_request(format!("invalid persistedQuery: {err}")))?;
            request.extensions.insert("persistedQuery".into(), value);
        }
        Ok(request)
    }
}

/// Reads a `POST` body: `application/json` only, a request object or a non-empty array
/// of them (a batch).
pub fn read_post(headers: &HeaderMap, body: &[u8]) -> Result<BatchRequest, Refusal> {
    let unsupported = || Refusal {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: "UNSUPPORTED_MEDIA_TYPE",
        message: "send the request as application/json".into(),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unsupported)?;
    let mut params = content_type.split(';');
    let essence = params.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(unsupported());
    }
    for param in params {
        if let Some((name, value)) = param.split_once('=') {
            let value = value.trim().trim_matches('"');
            if name.trim().eq_ignore_ascii_case("charset") && !value.eq_ignore_ascii_case("utf-8") {
                return Err(unsupported());
            }
        }
    }
    let invalid =
        |err: serde_json::Error| Refusal::bad_request(format!("invalid JSON body: {err}"));
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let wire: Vec<WireRequest> = serde_json::from_slice(body).map_err(invalid)?;
        if wire.is_empty() {
            return Err(Refusal::bad_request("a batch needs at least one request"));
        }
        let requests = wire
            .into_iter()
            .map(WireRequest::into_request)
            .collect::<Result<_, _>>()?;
        Ok(BatchRequest::Batch(requests))
    } else {
        let wire: WireRequest = serde_json::from_slice(body).map_err(invalid)?;
        Ok(BatchRequest::Single(wire.into_request()?))
    }
}

/// The parameters of a `GET` request; `variables` and `extensions` are JSON text.
#[derive(Deserialize)]
struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
    #[serde(rename = "documentId")]
    document_id: Option<String>,
}

/// Reads a `GET` request's query string.
pub fn read_get(uri: &Uri) -> Result<BatchRequest, Refusal> {
    let params = axum::extract::Query::<GetParams>::try_from_uri(uri)
        .map_err(|err| Refusal::bad_request(format!("invalid query string: {err}")))?
        .0;
    let json = |name: &str, text: Option<String>| -> Result<Option<serde_json::Value>, Refusal> {
        text.filter(|t| !t.is_empty())
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|err| Refusal::bad_request(format!("invalid {name}: {err}")))
    };
    let variables = match json("variables", params.variables)? {
        None | Some(serde_json::Value::Null) => Variables::default(),
        Some(value @ serde_json::Value::Object(_)) => Variables::from_json(value),
        Some(_) => return Err(Refusal::bad_request("`variables` must be a JSON object")),
    };
    let extensions = match json("extensions", params.extensions)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(map)) => Some(map.into_iter().collect()),
        Some(_) => return Err(Refusal::bad_request("`extensions` must be a JSON object")),
    };
    let wire = WireRequest {
        query: params.query,
        operation_name: params.operation_name,
        variables,
        extensions,
        document_id: params.document_id,
    };
    Ok(BatchRequest::Single(wire.into_request()?))
}

/// Whether a response failed before execution: no data, and no error with a path
/// (resolver errors always have one).
fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// The status of a response that failed only for one reason HTTP has a code for: the
/// database (503) or a rate limit (429), with the seconds for `Retry-After`.
fn refusal_status(response: &async_graphql::Response) -> Option<(StatusCode, u64)> {
    if response.data != async_graphql::Value::Null || response.errors.is_empty() {
        return None;
    }
    let code_of =
        |e: &async_graphql::ServerError| match e.extensions.as_ref().and_then(|x| x.get("code")) {
            Some(async_graphql::Value::String(code)) => Some(code.clone()),
            _ => None,
        };
    let first = code_of(&response.errors[0])?;
    if !response
        .errors
        .iter()
        .all(|e| code_of(e).as_ref() == Some(&first))
    {
        return None;
    }
    match first.as_str() {
        "UNAVAILABLE" => Some((StatusCode::SERVICE_UNAVAILABLE, 1)),
        "RATE_LIMITED" => {
            let after = response
                .errors
                .iter()
                .filter_map(|e| match e.extensions.as_ref()?.get("retryAfterSeconds")? {
                    async_graphql::Value::Number(n) => n.as_u64(),
                    _ => None,
                })
                .max()
                .unwrap_or(1);
            Some((StatusCode::TOO_MANY_REQUESTS, after))
        }
        _ => None,
    }
}

/// Writes a response: status by [`Media`], no `data` key for a request error; 503 or
/// 429 with `Retry-After` when the database could not be reached or a limit was hit.
pub fn respond(media: Media, response: &BatchResponse) -> Response {
    let refusal = match response {
        BatchResponse::Single(single) => refusal_status(single),
        BatchResponse::Batch(_) => None,
    };
    let (status, body) = match response {
        BatchResponse::Single(single) if is_request_error(single) => {
            let status = match (refusal, media) {
                (Some((status, _)), _) => status,
                (None, Media::GraphqlResponse) => StatusCode::BAD_REQUEST,
                (None, Media::Json) => StatusCode::OK,
            };
            let body = serde_json::json!({ "errors": single.errors });
            (status, serde_json::to_vec(&body))
        }
        _ => (
            refusal.map_or(StatusCode::OK, |(status, _)| status),
            serde_json::to_vec(response),
        ),
    };
    let body = match body {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(error = %err, "serializing a response failed");
            return error_response(
                media,
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "internal error",
            );
        }
    };
    let mut http = (status, [(header::CONTENT_TYPE, media.content_type())], body).into_response();
    if let Some((_, after)) = refusal {
        http.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(after));
    }
    if let BatchResponse::Single(single) = response {
        for (name, value) in single.http_headers.iter() {
            http.headers_mut().append(name, value.clone());
        }
    }
    http
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Option<Media> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        Media::negotiate(&headers)
    }

    #[test]
    fn negotiation_prefers_the_graphql_response_type() {
        assert_eq!(Media::negotiate(&HeaderMap::new()), Some(Media::Json));
        assert_eq!(accept("application/json"), Some(Media::Json));
        assert_eq!(accept("*/*"), Some(Media::Json));
        assert_eq!(
            accept("application/graphql-response+json, application/json;q=0.9"),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(accept("text/html"), None);
    }

    fn post(content_type: Option<&str>, body: &str) -> Result<BatchRequest, Refusal> {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        read_post(&headers, body.as_bytes())
    }

    #[test]
    fn posts_must_be_utf8_json_with_a_query() {
        let ok = r#"{"query":"{ a }","variables":null,"operationName":null,"extensions":null}"#;
        assert!(post(Some("application/json"), ok).is_ok());
        assert!(post(Some("application/json; charset=utf-8"), ok).is_ok());
        for refused in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/json; charset=latin1"),
        ] {
            let err = post(refused, ok).unwrap_err();
            assert_eq!(
                err.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{refused:?}"
            );
        }
        for bad in [
            "{",
            "{}",
            r#"{"query": 1}"#,
            r#"{"query":"{ a }","variables":"x"}"#,
            "[]",
        ] {
            let err = post(Some("application/json"), bad).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        let batch = post(Some("application/json"), &format!("[{ok},{ok}]")).unwrap();
        assert!(matches!(batch, BatchRequest::Batch(b) if b.len() == 2));
    }

    #[test]
    fn get_reads_the_specs_parameter_names() {
        let uri: Uri =
            "/graphql?query=query%20Q%7Ba%7D&operationName=Q&variables=%7B%22x%22%3A1%7D"
                .parse()
                .unwrap();
        let BatchRequest::Single(request) = read_get(&uri).unwrap() else {
            panic!("one request");
        };
        assert_eq!(request.operation_name.as_deref(), Some("Q"));
        assert_eq!(request.variables.len(), 1);
        // A document id stands for the text, which the trusted documents supply.
        let uri: Uri = "/graphql?documentId=sha256%3Aab12".parse().unwrap();
        let BatchRequest::Single(request) = read_get(&uri).unwrap() else {
            panic!("one request");
        };
        assert!(request.query.is_empty());
        assert_eq!(
            request.extensions["persistedQuery"],
            async_graphql::Value::from_json(
                serde_json::json!({ "version": 1, "sha256Hash": "ab12" })
            )
            .unwrap()
        );
        let uri: Uri = "/graphql?operationName=Q".parse().unwrap();
        assert_eq!(read_get(&uri).unwrap_err().code, "BAD_USER_INPUT");
    }
}

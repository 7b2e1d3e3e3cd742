//! A fake model provider for tests: a real HTTP server on loopback speaking OpenAI's
//! chat-completions wire format (`POST /v1/chat/completions`). It keeps every request it
//! receives and answers each by a script, so tests of providers and of processes see
//! what a provider was sent and can make it fail in each way a real one does.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// How the server answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A completion of the last user message: `echo: {message}`, or the JSON
    /// `{"echo": message}` when the request asks for a JSON response format; its usage
    /// counts words (of all the request's messages, and of the answer).
    Echo,
    /// A completion with this content, and usage counting words.
    Content(String),
    /// This status with an OpenAI error body (`{"error": {"message": …}}`).
    Error { status: u16, message: String },
    /// 429 with this `Retry-After` header and an OpenAI error body.
    RateLimited { retry_after: String },
    /// An [`Reply::Echo`] after this wait.
    Delay(Duration),
    /// 200 with a body that is not JSON.
    Malformed,
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    /// The JSON body (`null` when it was not JSON).
    pub body: Value,
}

/// A running fake provider.
pub struct ChatServer {
    /// What an `http` connection's `baseUrl` is set to: `http://127.0.0.1:{port}/v1`.
    pub base_url: String,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Replies still to give, in order; [`Reply::Echo`] once they are used up.
    script: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
}

impl ChatServer {
    /// Starts a server on 127.0.0.1 that gives `script`'s replies in order, then echoes.
    pub async fn start(script: impl IntoIterator<Item = Reply>) -> Self {
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into_iter().collect()),
            received: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base_url, shared }
    }

    /// Adds a reply to the end of the script.
    pub fn then(&self, reply: Reply) {
        self.shared.script.lock().unwrap().push_back(reply);
    }

    /// Requests received so far, on any path.
    pub fn calls(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    /// The requests received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let request = serde_json::from_str(&body).unwrap_or(Value::Null);
    shared.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers,
        body: request.clone(),
    });
    if uri.path() != "/v1/chat/completions" {
        return error(StatusCode::NOT_FOUND, "no such endpoint");
    }
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Echo);
    match reply {
        Reply::Echo => completion(&request, &echo(&request)),
        Reply::Content(content) => completion(&request, &content),
        Reply::Error { status, message } => error(StatusCode::from_u16(status).unwrap(), &message),
        Reply::RateLimited { retry_after } => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached");
            response
                .headers_mut()
                .insert("retry-after", retry_after.parse().unwrap());
            response
        }
        Reply::Delay(wait) => {
            tokio::time::sleep(wait).await;
            completion(&request, &echo(&request))
        }
        Reply::Malformed => (
            [("content-type", "application/json")],
            "{\"choices\": [{\"message\": ",
        )
            .into_response(),
    }
}

/// The echo of a request's last user message.
fn echo(request: &Value) -> String {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default();
    let wants_json = request["response_format"]["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("json"));
    if wants_json {
        json!({ "echo": last_user }).to_string()
    } else {
        format!("echo: {last_user}")
    }
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

/// A chat-completions answer with `content`, its usage counted in words.
fn completion(request: &Value, content: &str) -> Response {
    let prompt_tokens: usize = request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str())
        .map(words)
        .sum();
    let completion_tokens = words(content);
    axum::Json(json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": request["model"],
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": content },
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }))
    .into_response()
}

/// `status` with an OpenAI error body.
fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "error": { "message": message, "type": "invalid_request_error", "param": null, "code": null },
    });
    (status, axum::Json(body)).into_response()
}

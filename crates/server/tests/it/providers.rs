//! Model providers against a real chat-completions server on loopback: the request is
//! the wire format with the connection's credentials, transient failures are retried
//! and final ones are not, every failure has its code, and a provider is reached only
//! through the egress guard.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trellis_core::egress::Egress;
use trellis_core::integrations::connections::OpenConnection;
use trellis_core::processes::providers::{
    call_with_retries, complete_with_retries, ChatRole, Message, ModelSettings, OpenAiCompatible,
    ProviderError, ResponseFormat,
};

use crate::chat_provider::{ChatServer, Reply};

const KEY: &str = "Bearer sk-test-0123456789";

/// The guard as the tests' servers need it: 127.0.0.1 admitted.
fn loopback_allowed() -> Egress {
    Egress::new(vec!["127.0.0.1/32".parse().unwrap()]).unwrap()
}

/// An `http` connection to `base_url` with the test key and a default header.
fn connection(base_url: &str) -> OpenConnection {
    OpenConnection {
        app_key: "http".into(),
        config: json!({ "baseUrl": base_url, "defaultHeaders": { "x-team": "prompts" } }),
        secrets: [("authorization".to_owned(), KEY.to_owned().into())].into(),
    }
}

fn provider(server: &ChatServer) -> OpenAiCompatible {
    OpenAiCompatible::from_connection(&loopback_allowed(), &connection(&server.base_url)).unwrap()
}

/// Quick retries, so that tests of retrying take milliseconds.
fn settings() -> ModelSettings {
    ModelSettings {
        timeout: Duration::from_secs(5),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        ..ModelSettings::new("gpt-test")
    }
}

fn prompt() -> Vec<Message> {
    vec![
        Message::new(ChatRole::System, "You summarise tickets."),
        Message::new(ChatRole::User, "Printer on fire"),
    ]
}

#[tokio::test]
async fn a_completion_carries_the_answer_tokens_and_the_connections_credentials() {
    let server = ChatServer::start([]).await;
    let settings = ModelSettings {
        temperature: Some(0.5),
        max_tokens: Some(100),
        ..settings()
    };
    let completion = complete_with_retries(&provider(&server), &prompt(), &settings)
        .await
        .unwrap();
    assert_eq!(completion.content, "echo: Printer on fire");
    assert_eq!(completion.input_tokens, 6);
    assert_eq!(completion.output_tokens, 4);
    assert_eq!(completion.attempts, 1);
    assert!(completion.provider_latency > Duration::ZERO);

    let received = server.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.headers["authorization"], KEY);
    assert_eq!(request.headers["x-team"], "prompts");
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(
        request.body,
        json!({
            "model": "gpt-test",
            "messages": [
                { "role": "system", "content": "You summarise tickets." },
                { "role": "user", "content": "Printer on fire" },
            ],
            "temperature": 0.5,
            "max_tokens": 100,
            "stream": false,
        })
    );
}

#[tokio::test]
async fn json_formats_are_asked_for_and_the_answer_must_be_json() {
    let server = ChatServer::start([]).await;
    let provider = provider(&server);
    let schema = json!({ "type": "object", "properties": { "echo": { "type": "string" } },
                         "required": ["echo"], "additionalProperties": false });
    let formats = [
        (ResponseFormat::Json, json!({ "type": "json_object" })),
        (
            ResponseFormat::JsonSchema {
                name: "summary".into(),
                schema: schema.clone(),
            },
            json!({ "type": "json_schema",
                    "json_schema": { "name": "summary", "schema": schema, "strict": true } }),
        ),
    ];
    for (format, asked) in formats {
        let settings = ModelSettings {
            response_format: format,
            ..settings()
        };
        let completion = complete_with_retries(&provider, &prompt(), &settings)
            .await
            .unwrap();
        let answer: Value = serde_json::from_str(&completion.content).unwrap();
        assert_eq!(answer, json!({ "echo": "Printer on fire" }));
        let request = server.received().pop().unwrap();
        assert_eq!(request.body["response_format"], asked);

        // Text where JSON was asked for is unusable, and asking again would not help.
        server.then(Reply::Content("Sure! Here is your JSON.".into()));
        let calls = server.calls();
        let err = complete_with_retries(&provider, &prompt(), &settings)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "PROVIDER_BAD_RESPONSE");
        assert_eq!(server.calls(), calls + 1);
    }
}

#[tokio::test]
async fn a_rate_limit_is_retried_after_its_retry_after() {
    let server = ChatServer::start([Reply::RateLimited {
        retry_after: "1".into(),
    }])
    .await;
    let started = Instant::now();
    let completion = complete_with_retries(&provider(&server), &prompt(), &settings())
        .await
        .unwrap();
    assert_eq!(completion.content, "echo: Printer on fire");
    assert_eq!(completion.attempts, 2);
    assert_eq!(server.calls(), 2);
    // The provider's second, not the 10 ms backoff; and the wait is not latency.
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(completion.provider_latency < Duration::from_secs(1));
}

#[tokio::test]
async fn server_errors_are_retried_until_the_attempts_run_out() {
    let overloaded = || Reply::Error {
        status: 503,
        message: "The engine is currently overloaded".into(),
    };
    let server = ChatServer::start([overloaded(), overloaded(), overloaded()]).await;
    let call = call_with_retries(&provider(&server), &prompt(), &settings()).await;
    assert_eq!(
        call.result,
        Err(ProviderError::Unavailable {
            status: Some(503),
            message: "The engine is currently overloaded".into(),
        })
    );
    assert_eq!(call.attempts, 3);
    assert_eq!(server.calls(), 3);
}

#[tokio::test]
async fn a_rejection_is_not_retried_and_keeps_the_providers_message() {
    let server = ChatServer::start([Reply::Error {
        status: 404,
        message: "The model `gpt-nope` does not exist".into(),
    }])
    .await;
    let err = complete_with_retries(&provider(&server), &prompt(), &settings())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ProviderError::Rejected {
            status: 404,
            message: "The model `gpt-nope` does not exist".into(),
        }
    );
    assert_eq!(err.code(), "PROVIDER_REJECTED");
    assert_eq!(server.calls(), 1);

    // A provider that repeats the key does not get it into the message.
    server.then(Reply::Error {
        status: 401,
        message: format!("Incorrect API key provided: {}", &KEY[7..]),
    });
    let err = complete_with_retries(&provider(&server), &prompt(), &settings())
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "the model provider rejected the request (HTTP 401): Incorrect API key provided: [redacted]"
    );
}

#[tokio::test]
async fn a_slow_provider_times_out_on_each_attempt() {
    let slow = || Reply::Delay(Duration::from_secs(3));
    let server = ChatServer::start([slow(), slow()]).await;
    let settings = ModelSettings {
        timeout: Duration::from_millis(200),
        max_attempts: 2,
        ..settings()
    };
    let started = Instant::now();
    let call = call_with_retries(&provider(&server), &prompt(), &settings).await;
    assert_eq!(call.result, Err(ProviderError::Timeout));
    assert_eq!(call.result.unwrap_err().code(), "PROVIDER_TIMEOUT");
    assert_eq!(call.attempts, 2);
    assert_eq!(server.calls(), 2);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_malformed_answer_is_a_bad_response_and_not_retried() {
    let server = ChatServer::start([Reply::Malformed]).await;
    let err = complete_with_retries(&provider(&server), &prompt(), &settings())
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::BadResponse(_)), "{err:?}");
    assert_eq!(err.code(), "PROVIDER_BAD_RESPONSE");
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn the_egress_guard_refuses_loopback_unless_it_is_allowed() {
    let server = ChatServer::start([]).await;
    let guarded = Egress::new(vec![]).unwrap();
    // An address in the URL is refused before any request.
    let err =
        OpenAiCompatible::from_connection(&guarded, &connection(&server.base_url)).unwrap_err();
    assert_eq!(err.code(), "EGRESS_REFUSED");
    // A name is refused once it resolves to loopback.
    let by_name = server.base_url.replace("127.0.0.1", "localhost");
    let provider = OpenAiCompatible::from_connection(&guarded, &connection(&by_name)).unwrap();
    let call = call_with_retries(&provider, &prompt(), &settings()).await;
    assert_eq!(call.result.unwrap_err().code(), "EGRESS_REFUSED");
    assert_eq!(call.attempts, 1);
    assert_eq!(server.calls(), 0);

    let allowed =
        OpenAiCompatible::from_connection(&loopback_allowed(), &connection(&by_name)).unwrap();
    let completion = complete_with_retries(&allowed, &prompt(), &settings())
        .await
        .unwrap();
    assert_eq!(completion.content, "echo: Printer on fire");
    assert_eq!(server.calls(), 1);
}

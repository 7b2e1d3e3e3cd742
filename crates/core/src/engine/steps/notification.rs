//! NOTIFICATION: tells people. `{channel, to, title, message}`, or the seeds' shape
//! `{notificationType, recipients, template}` (the same, named differently).
//!
//! - `in_app`: one row per recipient in the inbox the dashboard lists
//!   (`notifications`). Recipients are members, named as approvers are: roles (and
//!   those above), user ids or email addresses. The rows are written in the move that
//!   completes the step, so a step notifies exactly once.
//! - `email`: one message to the addresses in `to`, through the step's connection of
//!   the `email` app (SMTP: host, port, security, username and its password secret),
//!   sent with lettre to an address the egress guard admits.
//! - `slack`, `webhook`: one POST of `{text, title, data}` as JSON to the `baseUrl` of
//!   the step's connection of the `http` app (a Slack incoming webhook, say), with its
//!   default headers and authorization secret, through the egress guard.
//!
//! Email, Slack and webhook notifications call out: the executor sends them outside
//! any transaction, and retries them like HTTP steps.
//!
//! A simulation notifies nobody: the step answers from its `sampleOutput`.

use serde_json::{json, Value};

use secrecy::ExposeSecret;

use super::{StepInput, StepKind, StepResult};
use crate::egress::{refusal_in, Refused};
use crate::engine::people::{parse_person, Person};
use crate::integrations::connections::OpenConnection;
use crate::notifications::{deliver_in_app, InApp};

pub struct Notification;

/// The channel of a notification config (`channel` or the seeds' `notificationType`).
pub fn channel_of(config: &Value) -> Option<&str> {
    config
        .get("channel")
        .or_else(|| config.get("notificationType"))
        .and_then(Value::as_str)
}

fn text<'a>(config: &'a Value, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| config.get(*k).and_then(Value::as_str))
}

/// The entries of `to` (or the seeds' `recipients`): one string or a list of them.
fn named(config: &Value) -> Vec<&str> {
    match config.get("to").or_else(|| config.get("recipients")) {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The people a config names, as members (in-app).
fn recipients(config: &Value) -> Vec<Person> {
    named(config).into_iter().filter_map(parse_person).collect()
}

impl StepKind for Notification {
    async fn execute(&self, input: &StepInput<'_>) -> StepResult {
        let config = input.config;
        let body = text(config, &["message", "template", "body"]).unwrap_or_default();
        let title = text(config, &["title", "subject"]).unwrap_or("Notification");
        match channel_of(config) {
            Some("in_app") => in_app(input, title, body).await,
            Some("email") => email(input, title, body).await,
            Some("slack" | "webhook") => webhook(input, title, body).await,
            _ => fail("the step names no channel"),
        }
    }
}

/// A failure that would fail again the same way.
fn fail(message: &str) -> StepResult {
    StepResult::Failed(json!({ "message": message, "retryable": false }))
}

async fn in_app(input: &StepInput<'_>, title: &str, body: &str) -> StepResult {
    let Some(db) = input.db else {
        return fail("an in-app notification is delivered inside its run's transaction");
    };
    let people = recipients(input.config);
    let message = InApp {
        run_id: input.ids.run_id,
        step_run_id: input.ids.step_run_id,
        title,
        body,
        data: input.config.get("data").cloned(),
    };
    match deliver_in_app(db, input.ids.tenant_id, &people, &message).await {
        Ok(reached) => StepResult::Done(json!({
            "channel": "in_app",
            "delivered": reached.len(),
        })),
        // A database error: the move fails and the step is tried again.
        Err(err) => StepResult::Failed(json!({ "message": err.to_string() })),
    }
}

/// The connection a step that calls out was given, if it is of `app`.
fn connection<'a>(input: &'a StepInput<'_>, app: &str) -> Option<&'a OpenConnection> {
    input.connection.filter(|c| c.app_key == app)
}

async fn email(input: &StepInput<'_>, subject: &str, body: &str) -> StepResult {
    use lettre::message::Mailbox;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let Some(conn) = connection(input, "email") else {
        return fail("an email notification needs a connection of the email app");
    };
    let setting = |key: &str| conn.config.get(key).and_then(Value::as_str).unwrap_or("");
    let host = setting("host");
    let port = conn
        .config
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(587);
    let to: Vec<Mailbox> = match addresses(input.config) {
        Ok(to) if !to.is_empty() => to,
        Ok(_) => return fail("an email notification needs addresses in `to`"),
        Err(bad) => return fail(&format!("{bad} is not an email address")),
    };
    let from = match setting("fromAddress").parse() {
        Ok(address) => Mailbox::new(
            Some(setting("fromName").to_owned()).filter(|n| !n.is_empty()),
            address,
        ),
        Err(_) => return fail("the connection's fromAddress is not an email address"),
    };
    // The guard checks the address connected to: resolve here, connect to that address.
    let addr = match tokio::net::lookup_host((host, port)).await {
        Ok(mut found) => match found.find(|a| input.egress.permits(a.ip())) {
            Some(addr) => addr,
            None => return fail(&Refused(host.to_owned()).to_string()),
        },
        Err(err) => {
            return StepResult::Failed(json!({
                "message": format!("{host} does not resolve: {err}"),
                "code": "REQUEST_FAILED",
            }))
        }
    };
    let tls = match setting("security") {
        "none" => Tls::None,
        security => match TlsParameters::new(host.to_owned()) {
            Ok(params) if security == "tls" => Tls::Wrapper(params),
            Ok(params) => Tls::Required(params),
            Err(err) => return fail(&format!("TLS for {host}: {err}")),
        },
    };
    let mut transport =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
            .port(addr.port())
            .tls(tls)
            .timeout(Some(super::timeout_of(
                trellis_entity::StepType::Notification,
                input.config,
                None,
            )));
    let username = setting("username");
    if !username.is_empty() {
        let password = conn
            .secrets
            .get("password")
            .map(|p| p.expose_secret().to_owned())
            .unwrap_or_default();
        transport = transport.credentials(Credentials::new(username.to_owned(), password));
    }
    let mut message = Message::builder().from(from).subject(subject);
    let sent_to: Vec<String> = to.iter().map(ToString::to_string).collect();
    for mailbox in to {
        message = message.to(mailbox);
    }
    let message = match message.body(body.to_owned()) {
        Ok(message) => message,
        Err(err) => return fail(&format!("the message cannot be built: {err}")),
    };
    match transport.build().send(message).await {
        Ok(_) => StepResult::Done(json!({ "channel": "email", "to": sent_to })),
        Err(err) => StepResult::Failed(json!({
            "message": format!("the SMTP server refused or failed: {err}"),
            "code": "REQUEST_FAILED",
            "retryable": !err.is_permanent(),
        })),
    }
}

/// The email addresses in `to` (or `recipients`); the first entry that is not one.
fn addresses(config: &Value) -> Result<Vec<lettre::message::Mailbox>, String> {
    named(config)
        .into_iter()
        .map(|entry| entry.parse().map_err(|_| entry.to_owned()))
        .collect()
}

async fn webhook(input: &StepInput<'_>, title: &str, body: &str) -> StepResult {
    let Some(conn) = connection(input, "http") else {
        return fail("a Slack or webhook notification needs a connection of the http app");
    };
    let Some(url) = conn.config.get("baseUrl").and_then(Value::as_str) else {
        return fail("the connection has no baseUrl to post to");
    };
    if let Err(refused) = input.egress.check_url(url) {
        return fail(&refused.to_string());
    }
    let payload = json!({ "text": body, "title": title, "data": input.config.get("data") });
    let mut request = input
        .egress
        .client()
        .post(url)
        .timeout(super::timeout_of(
            trellis_entity::StepType::Notification,
            input.config,
            None,
        ))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(payload.to_string());
    if let Some(headers) = conn.config.get("defaultHeaders").and_then(Value::as_object) {
        for (name, value) in headers {
            if let Some(value) = value.as_str() {
                request = request.header(name, value);
            }
        }
    }
    if let Some(secret) = conn.secrets.get("authorization") {
        match reqwest::header::HeaderValue::from_str(secret.expose_secret()) {
            Ok(mut value) => {
                value.set_sensitive(true);
                request = request.header(reqwest::header::AUTHORIZATION, value);
            }
            Err(_) => return fail("the authorization secret is not a valid header value"),
        }
    }
    match request.send().await {
        Ok(response) if response.status().is_success() => StepResult::Done(json!({
            "channel": channel_of(input.config),
            "status": response.status().as_u16(),
        })),
        Ok(response) => {
            let status = response.status();
            StepResult::Failed(json!({
                "message": format!("the webhook answered HTTP {status}"),
                "status": status.as_u16(),
                "retryable": !status.is_client_error() || matches!(status.as_u16(), 408 | 425 | 429),
            }))
        }
        Err(err) => match refusal_in(&err) {
            Some(refused) => fail(&refused.to_string()),
            None => StepResult::Failed(json!({
                "message": format!("the request failed: {err}"),
                "code": if err.is_timeout() { "TIMEOUT" } else { "REQUEST_FAILED" },
            })),
        },
    }
}

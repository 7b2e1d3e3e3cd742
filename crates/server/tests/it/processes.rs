//! Processes: versions move from draft to SANDBOX to PRODUCTION and back (rollback),
//! published versions never change, invocations are checked, answered from the cache
//! or a real loopback provider, single-flighted across callers, logged and rolled up;
//! the REST route has the same semantics.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use trellis_core::scope::stmt;

use crate::chat_provider::{ChatServer, Reply};
use crate::connections::{create_secret, http_connection};
use crate::support::{as_app, Member, TestApp};

pub const CREATE_PROCESS: &str = "mutation($key: String!, $in: JSON, $out: JSON, $config: JSON) { createProcess(input: {key: $key, name: $key, inputSchema: $in, outputSchema: $out, config: $config}) { process { id key } userErrors { field message code } } }";
pub const CREATE_VERSION: &str = "mutation($p: ID!, $prompt: String, $from: ID, $provider: ProcessProvider, $c: ID, $model: String, $format: ProcessResponseFormat, $ttl: Int, $attempts: Int) { createProcessVersion(input: {processId: $p, userPrompt: $prompt, fromVersionId: $from, provider: $provider, connectionId: $c, model: $model, responseFormat: $format, cacheTtlSeconds: $ttl, maxAttempts: $attempts, retryBackoffMs: 10, inputPricePerMTok: 2.5, outputPricePerMTok: 10}) { version { id number isPublished environment } userErrors { field message code } } }";
pub const PUBLISH: &str = "mutation($id: ID!) { publishProcessVersion(input: {id: $id}) { version { id isPublished publishedAt } userErrors { field message code } } }";
pub const PROMOTE: &str = "mutation($id: ID!) { promoteProcessVersion(input: {versionId: $id}) { version { id environment } userErrors { field message code } } }";
pub const INVOKE: &str = "mutation($p: String!, $env: Environment, $input: JSON!, $v: Int, $cache: CacheMode) { invokeProcess(input: {process: $p, environment: $env, input: $input, version: $v, cache: $cache}) { output callId versionNumber environment cacheHit latencyMs providerLatencyMs inputTokens outputTokens cost } }";

/// The payload of a mutation that must have no userErrors.
pub fn payload<'a>(data: &'a Value, field: &str) -> &'a Value {
    let payload = &data[field];
    assert_eq!(payload["userErrors"], json!([]), "{field}: {payload:#}");
    payload
}

pub fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// Creates a process; its ID.
pub async fn create_process(
    app: &TestApp,
    owner: &Member,
    key: &str,
    input_schema: Value,
) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            CREATE_PROCESS,
            json!({ "key": key, "in": input_schema, "config": { "greeting": "Hello" } }),
        )
        .await;
    text(&payload(&data, "createProcess")["process"]["id"])
}

/// Creates and publishes a TEMPLATE version with `prompt`; its ID.
pub async fn published_template(
    app: &TestApp,
    owner: &Member,
    process: &str,
    prompt: &str,
) -> String {
    let data = app
        .ok(
            Some(&owner.token),
            CREATE_VERSION,
            json!({ "p": process, "prompt": prompt }),
        )
        .await;
    let id = text(&payload(&data, "createProcessVersion")["version"]["id"]);
    let data = app
        .ok(Some(&owner.token), PUBLISH, json!({ "id": id }))
        .await;
    payload(&data, "publishProcessVersion");
    id
}

/// An API key of the owner's tenant with only the INVOKE scope and `restrictions`
/// (more `CreateApiKeyInput` fields, e.g. `processEnvironment: SANDBOX`): its secret
/// and ID.
pub async fn invoke_key(app: &TestApp, owner: &Member, restrictions: &str) -> (String, String) {
    let data = app
        .ok(
            Some(&owner.token),
            &format!(
                "mutation {{ createApiKey(input: {{name: \"k-{}\", scopes: [INVOKE]{restrictions}}}) {{ secret apiKey {{ id scopes }} userErrors {{ field message }} }} }}",
                uuid::Uuid::new_v4().simple()
            ),
            json!({}),
        )
        .await;
    let created = payload(&data, "createApiKey");
    assert_eq!(created["apiKey"]["scopes"], json!(["INVOKE"]));
    (text(&created["secret"]), text(&created["apiKey"]["id"]))
}

/// Invokes through GraphQL; the payload.
pub async fn invoke(app: &TestApp, token: &str, variables: Value) -> Value {
    app.ok(Some(token), INVOKE, variables).await["invokeProcess"].clone()
}

/// Waits until the call `call_id` is in `calls` (a REST call is logged right after its
/// answer); fails after 10 s.
pub async fn logged(app: &TestApp, token: &str, call_id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let data = app
            .ok(
                Some(token),
                "query { calls(first: 100) { nodes { id } } }",
                json!({}),
            )
            .await;
        if data.to_string().contains(call_id) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "call {call_id} was never logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn versions_move_from_draft_to_production_and_roll_back() {
    let app = TestApp::new().await;
    let owner = app.owner("proc-life").await;
    let t = owner.token.as_str();
    let process = create_process(&app, &owner, "greet", json!({})).await;

    // A draft answers in SANDBOX by number only; PRODUCTION serves nothing yet.
    let data = app
        .ok(
            Some(t),
            CREATE_VERSION,
            json!({ "p": process, "prompt": "{{ config.greeting }} {{ input.name }}" }),
        )
        .await;
    let v1 = text(&payload(&data, "createProcessVersion")["version"]["id"]);
    let draft = invoke(
        &app,
        t,
        json!({ "p": "greet", "env": "SANDBOX", "v": 1, "input": { "name": "Ada" } }),
    )
    .await;
    assert_eq!(draft["output"], "Hello Ada");
    assert_eq!(draft["cacheHit"], false);
    let code = app
        .error_code(
            Some(t),
            INVOKE,
            json!({ "p": "greet", "env": "SANDBOX", "input": {} }),
        )
        .await;
    assert_eq!(code, "CONFLICT", "nothing is published");
    let data = app.ok(Some(t), PROMOTE, json!({ "id": v1 })).await;
    assert_eq!(
        data["promoteProcessVersion"]["userErrors"][0]["code"],
        "CONFLICT"
    );

    // Published: SANDBOX serves it; PRODUCTION once promoted.
    app.ok(Some(t), PUBLISH, json!({ "id": v1 })).await;
    let sandbox = invoke(
        &app,
        t,
        json!({ "p": "greet", "env": "SANDBOX", "input": { "name": "Ada" } }),
    )
    .await;
    assert_eq!(sandbox["versionNumber"], 1);
    let code = app
        .error_code(
            Some(t),
            INVOKE,
            json!({ "p": "greet", "input": { "name": "Ada" } }),
        )
        .await;
    assert_eq!(
        code, "CONFLICT",
        "PRODUCTION serves nothing before a promotion"
    );
    payload(
        &app.ok(Some(t), PROMOTE, json!({ "id": v1 })).await,
        "promoteProcessVersion",
    );
    let prod = invoke(&app, t, json!({ "p": process, "input": { "name": "Ada" } })).await;
    assert_eq!(
        (prod["output"].clone(), prod["environment"].clone()),
        (json!("Hello Ada"), json!("PRODUCTION"))
    );

    // A published version never changes, through the API or the database.
    let data = app
        .ok(Some(t), "mutation($id: ID!) { updateProcessVersion(input: {id: $id, userPrompt: \"changed\"}) { userErrors { code field } } }", json!({ "id": v1 }))
        .await;
    assert_eq!(
        data["updateProcessVersion"]["userErrors"][0]["code"],
        "CONFLICT"
    );
    let pool = app.db.app_pool(1).await;
    let tx = as_app(&pool, Some(owner.tenant_uuid()), None).await;
    let changed = sea_orm::ConnectionTrait::execute(
        &tx,
        stmt(
            "UPDATE process_versions SET user_prompt = 'x' WHERE id = $1",
            [crate::isolation_workflows::uuid(&v1).into()],
        ),
    )
    .await;
    assert!(changed.unwrap_err().to_string().contains("cannot change"));
    drop(tx);

    // v2 from v1, promoted; then a rollback to v1. History keeps every move.
    let data = app
        .ok(
            Some(t),
            CREATE_VERSION,
            json!({ "p": process, "from": v1, "prompt": "Hi {{ input.name }}" }),
        )
        .await;
    let v2 = text(&payload(&data, "createProcessVersion")["version"]["id"]);
    app.ok(Some(t), PUBLISH, json!({ "id": v2 })).await;
    app.ok(Some(t), PROMOTE, json!({ "id": v2 })).await;
    let prod = invoke(&app, t, json!({ "p": "greet", "input": { "name": "Ada" } })).await;
    assert_eq!(prod["output"], "Hi Ada");
    app.ok(Some(t), PROMOTE, json!({ "id": v1 })).await;
    let prod = invoke(&app, t, json!({ "p": "greet", "input": { "name": "Ada" } })).await;
    assert_eq!(
        (prod["output"].clone(), prod["versionNumber"].clone()),
        (json!("Hello Ada"), json!(1))
    );
    let data = app
        .ok(Some(t), "query { process(key: \"greet\") { sandboxVersion { number } productionVersion { number } versions { number isPublished environment } promotions { environment fromVersion { number } toVersion { number } promotedBy { email } } } }", json!({}))
        .await;
    let p = &data["process"];
    assert_eq!(p["sandboxVersion"]["number"], 2);
    assert_eq!(p["productionVersion"]["number"], 1);
    assert_eq!(p["versions"][0]["number"], 2, "newest first");
    let moves: Vec<(String, Value, i64)> = p["promotions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                text(&m["environment"]),
                m["fromVersion"]["number"].clone(),
                m["toVersion"]["number"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("PRODUCTION".into(), json!(2), 1),
            ("PRODUCTION".into(), json!(1), 2),
            ("SANDBOX".into(), json!(1), 2),
            ("PRODUCTION".into(), Value::Null, 1),
            ("SANDBOX".into(), Value::Null, 1),
        ]
    );
    assert_eq!(
        p["promotions"][0]["promotedBy"]["email"],
        owner.email.as_str()
    );

    // Deleted, callers get NOT_FOUND and the key is free; restoring brings it back.
    app.ok(
        Some(t),
        "mutation($id: ID!) { deleteProcess(input: {id: $id}) { userErrors { code } } }",
        json!({ "id": process }),
    )
    .await;
    let code = app
        .error_code(Some(t), INVOKE, json!({ "p": "greet", "input": {} }))
        .await;
    assert_eq!(code, "NOT_FOUND");
    app.ok(
        Some(t),
        "mutation($id: ID!) { restoreProcess(input: {id: $id}) { userErrors { code } } }",
        json!({ "id": process }),
    )
    .await;
    let prod = invoke(&app, t, json!({ "p": "greet", "input": { "name": "Ada" } })).await;
    assert_eq!(prod["output"], "Hello Ada");
}

#[tokio::test]
async fn invocations_are_checked_cached_logged_and_rolled_up() {
    let app = TestApp::new().await;
    let owner = app.owner("proc-cache").await;
    let t = owner.token.as_str();
    let schema = json!({
        "type": "object",
        "properties": { "name": { "type": "string" }, "age": { "type": "integer" } },
        "required": ["name"],
    });
    let process = create_process(&app, &owner, "greet", schema).await;
    published_template(&app, &owner, &process, "Hello {{ input.name }}").await;
    let call = |input: Value, cache: &str| json!({ "p": "greet", "env": "SANDBOX", "input": input, "cache": cache });

    // Bad input names its path, is logged as INVALID_INPUT and calls nothing.
    let errors = app
        .post(
            Some(t),
            INVOKE,
            call(json!({ "name": "Ada", "age": "old" }), "DEFAULT"),
        )
        .await;
    let error = &errors.1["errors"][0];
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{errors:?}");
    assert_eq!(error["extensions"]["field"], "input/age");

    let first = invoke(&app, t, call(json!({ "name": "Ada", "age": 3 }), "DEFAULT")).await;
    assert_eq!(
        (first["output"].clone(), first["cacheHit"].clone()),
        (json!("Hello Ada"), json!(false))
    );
    // Key order does not matter: the canonical input hashes alike.
    let second = invoke(&app, t, call(json!({ "age": 3, "name": "Ada" }), "DEFAULT")).await;
    assert_eq!(
        (second["output"].clone(), second["cacheHit"].clone()),
        (json!("Hello Ada"), json!(true))
    );
    let bypass = invoke(&app, t, call(json!({ "name": "Ada", "age": 3 }), "BYPASS")).await;
    assert_eq!(bypass["cacheHit"], false);
    let refresh = invoke(&app, t, call(json!({ "name": "Ada", "age": 3 }), "REFRESH")).await;
    assert_eq!(refresh["cacheHit"], false);
    let other = invoke(&app, t, call(json!({ "name": "Bo" }), "DEFAULT")).await;
    assert_eq!(
        (other["output"].clone(), other["cacheHit"].clone()),
        (json!("Hello Bo"), json!(false))
    );

    let data = app
        .ok(Some(t), "query { calls(first: 10) { edges { node { status cacheHit errorCode input output process { key } version { number } } } } hits: calls(filter: {cacheHit: true}) { edges { node { id } } } bad: calls(filter: {status: [INVALID_INPUT]}) { edges { node { errorCode errorMessage } } } }", json!({}))
        .await;
    let statuses: Vec<(String, bool)> = data["calls"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                text(&e["node"]["status"]),
                e["node"]["cacheHit"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("SUCCEEDED".into(), false),
            ("SUCCEEDED".into(), false),
            ("SUCCEEDED".into(), false),
            ("SUCCEEDED".into(), true),
            ("SUCCEEDED".into(), false),
            ("INVALID_INPUT".into(), false),
        ]
    );
    assert_eq!(data["calls"]["edges"][0]["node"]["output"], "Hello Bo");
    assert_eq!(data["calls"]["edges"][0]["node"]["version"]["number"], 1);
    assert_eq!(data["hits"]["edges"].as_array().unwrap().len(), 1);
    assert_eq!(
        data["bad"]["edges"][0]["node"]["errorCode"],
        "BAD_USER_INPUT"
    );

    let from = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let data = app
        .ok(Some(t), "query($from: DateTime!) { process(key: \"greet\") { usage(period: DAY, from: $from) { calls errors cacheHits cacheHitRate p50LatencyMs p95LatencyMs } } }", json!({ "from": from }))
        .await;
    let usage = &data["process"]["usage"];
    assert_eq!(usage.as_array().unwrap().len(), 1, "{usage}");
    assert_eq!(
        (
            usage[0]["calls"].clone(),
            usage[0]["errors"].clone(),
            usage[0]["cacheHits"].clone()
        ),
        (json!(6), json!(1), json!(1))
    );
    assert!(usage[0]["p95LatencyMs"].as_i64().unwrap() >= 1);
}

#[tokio::test]
async fn openai_compatible_versions_call_the_provider_through_their_connection() {
    let app = TestApp::with_args(&["--egress-allow", "127.0.0.1"]).await;
    let owner = app.owner("proc-openai").await;
    let t = owner.token.as_str();
    let provider = ChatServer::start([
        Reply::Content("{\"summary\": 42}".into()),
        Reply::Error {
            status: 400,
            message: "model not found".into(),
        },
        Reply::Content("{\"summary\": \"short\"}".into()),
    ])
    .await;
    let secret = create_secret(&app, &owner, "openai", "Bearer sk-test-123").await;
    let connection =
        http_connection(&app, &owner, "openai", &provider.base_url, Some(&secret)).await;
    let data = app
        .ok(Some(t), CREATE_PROCESS, json!({ "key": "summarise", "out": { "type": "object", "properties": { "summary": { "type": "string" } }, "required": ["summary"] } }))
        .await;
    let process = text(&payload(&data, "createProcess")["process"]["id"]);
    let data = app
        .ok(Some(t), CREATE_VERSION, json!({ "p": process, "prompt": "Summarise {{ input.text }}", "provider": "OPENAI_COMPATIBLE", "c": connection, "model": "gpt-test", "format": "JSON", "attempts": 1 }))
        .await;
    let version = text(&payload(&data, "createProcessVersion")["version"]["id"]);
    app.ok(Some(t), PUBLISH, json!({ "id": version })).await;
    let call = json!({ "p": "summarise", "env": "SANDBOX", "input": { "text": "a b c" } });

    // An answer that breaks the output schema fails the call, and is not cached.
    let code = app.error_code(Some(t), INVOKE, call.clone()).await;
    assert_eq!(code, "OUTPUT_INVALID");
    let sent = &provider.received()[0];
    assert_eq!(sent.headers["authorization"], "Bearer sk-test-123");
    assert_eq!(sent.body["model"], "gpt-test");
    assert_eq!(
        sent.body["messages"],
        json!([{ "role": "user", "content": "Summarise a b c" }])
    );
    assert_eq!(sent.body["response_format"]["type"], "json_schema");
    // A provider's refusal keeps its message and code.
    let errors = app.post(Some(t), INVOKE, call.clone()).await;
    assert_eq!(
        errors.1["errors"][0]["extensions"]["code"], "PROVIDER_REJECTED",
        "{errors:?}"
    );
    assert!(errors.1["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("model not found"));

    // Then a good answer: tokens, cost and a cached answer.
    let answered = invoke(&app, t, call.clone()).await;
    assert_eq!(answered["output"], json!({ "summary": "short" }));
    assert_eq!(
        (
            answered["inputTokens"].clone(),
            answered["outputTokens"].clone()
        ),
        (json!(4), json!(2))
    );
    let cost = answered["cost"].as_f64().unwrap();
    assert!(
        (cost - (4.0 * 2.5 + 2.0 * 10.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert!(answered["providerLatencyMs"].is_number());
    let again = invoke(&app, t, call).await;
    assert_eq!(again["cacheHit"], true);
    assert_eq!(provider.calls(), 3);

    let data = app
        .ok(Some(t), "query { calls(filter: {status: [FAILED]}) { edges { node { errorCode attempts output } } } }", json!({}))
        .await;
    let codes: Vec<String> = data["calls"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| text(&e["node"]["errorCode"]))
        .collect();
    assert_eq!(codes, ["PROVIDER_REJECTED", "OUTPUT_INVALID"]);
}

/// A miss reads its provider's connection, secrets and data keys in the statement that
/// resolves the call (no statement of its own), and so follows every change to them:
/// a rotated secret is sent on the next call, and a deleted connection fails it.
#[tokio::test]
async fn a_miss_reads_its_connection_with_the_call_and_follows_its_changes() {
    let app = TestApp::with_args(&["--egress-allow", "127.0.0.1"]).await;
    let owner = app.owner("proc-conn-read").await;
    let t = owner.token.as_str();
    let provider = ChatServer::start([]).await;
    let secret = create_secret(&app, &owner, "llm", "Bearer sk-first").await;
    let connection = http_connection(&app, &owner, "llm", &provider.base_url, Some(&secret)).await;
    let data = app
        .ok(Some(t), CREATE_PROCESS, json!({ "key": "echoer" }))
        .await;
    let process = text(&payload(&data, "createProcess")["process"]["id"]);
    let data = app
        .ok(Some(t), CREATE_VERSION, json!({ "p": process, "prompt": "Say {{ input.text }}", "provider": "OPENAI_COMPATIBLE", "c": connection, "model": "m", "attempts": 1 }))
        .await;
    let version = text(&payload(&data, "createProcessVersion")["version"]["id"]);
    app.ok(Some(t), PUBLISH, json!({ "id": version })).await;
    let call = |word: &str| json!({ "p": "echoer", "env": "SANDBOX", "input": { "text": word }, "cache": "BYPASS" });

    // The first call also records the secret's use (once a minute); count the second.
    invoke(&app, t, call("warm")).await;
    let before = app.state.statements.load(Ordering::Relaxed);
    let answered = invoke(&app, t, call("hello")).await;
    let statements = app.state.statements.load(Ordering::Relaxed) - before;
    assert_eq!(answered["output"], "echo: Say hello");
    // Before the answer: the tenant context and RESOLVE (which read the connection);
    // after it: the tenant context and the call log. A statement of its own for the
    // connection would make it 5.
    assert_eq!(statements, 4, "statements of a miss");
    assert_eq!(
        provider.received().last().unwrap().headers["authorization"],
        "Bearer sk-first"
    );

    app.ok(
        Some(t),
        "mutation($id: ID!) { rotateSecret(input: {id: $id, value: \"Bearer sk-second\"}) { secret { version } } }",
        json!({ "id": secret }),
    )
    .await;
    invoke(&app, t, call("again")).await;
    assert_eq!(
        provider.received().last().unwrap().headers["authorization"],
        "Bearer sk-second"
    );

    app.ok(
        Some(t),
        "mutation($id: ID!) { deleteConnection(input: {id: $id}) { __typename } }",
        json!({ "id": connection }),
    )
    .await;
    let calls = provider.calls();
    let errors = app.post(Some(t), INVOKE, call("gone")).await;
    assert_eq!(
        errors.1["errors"][0]["extensions"]["code"], "PROVIDER_MISCONFIGURED",
        "{errors:?}"
    );
    assert_eq!(
        provider.calls(),
        calls,
        "a deleted connection is not called"
    );
}

#[tokio::test]
async fn identical_concurrent_misses_call_the_provider_once() {
    let app = TestApp::with_args(&["--egress-allow", "127.0.0.1"]).await;
    let owner = app.owner("proc-flight").await;
    let t = owner.token.clone();
    let provider = ChatServer::start([Reply::Delay(Duration::from_millis(400))]).await;
    let connection = http_connection(&app, &owner, "llm", &provider.base_url, None).await;
    let process = create_process(&app, &owner, "slow", json!({})).await;
    let data = app
        .ok(Some(&t), CREATE_VERSION, json!({ "p": process, "prompt": "Say {{ input.word }}", "provider": "OPENAI_COMPATIBLE", "c": connection, "model": "m" }))
        .await;
    let version = text(&payload(&data, "createProcessVersion")["version"]["id"]);
    app.ok(Some(&t), PUBLISH, json!({ "id": version })).await;

    let calls = (0..10).map(|_| {
        invoke(
            &app,
            &t,
            json!({ "p": "slow", "env": "SANDBOX", "input": { "word": "hi" } }),
        )
    });
    let answers = futures::future::join_all(calls).await;
    assert_eq!(
        provider.calls(),
        1,
        "one provider call for ten identical misses"
    );
    assert!(
        answers.iter().all(|a| a["output"] == "echo: Say hi"),
        "{answers:?}"
    );
    let hits = answers.iter().filter(|a| a["cacheHit"] == true).count();
    assert_eq!(hits, 9);
}

#[tokio::test]
async fn identical_misses_on_two_servers_call_the_provider_once() {
    let app = TestApp::new().await;
    let owner = app.owner("proc-flight-2").await;
    let provider = ChatServer::start([Reply::Delay(Duration::from_millis(500))]).await;
    let connection = http_connection(&app, &owner, "llm", &provider.base_url, None).await;
    let process = create_process(&app, &owner, "slow", json!({})).await;
    let data = app
        .ok(Some(&owner.token), CREATE_VERSION, json!({ "p": process, "prompt": "Say {{ input.word }}", "provider": "OPENAI_COMPATIBLE", "c": connection, "model": "m" }))
        .await;
    let version = text(&payload(&data, "createProcessVersion")["version"]["id"]);
    app.ok(Some(&owner.token), PUBLISH, json!({ "id": version }))
        .await;
    app.ok(Some(&owner.token), PROMOTE, json!({ "id": version }))
        .await;
    let (key, _) = invoke_key(&app, &owner, "").await;

    let (servers, urls) = crate::support::serve_replicas(&app, 2).await;
    let client = reqwest::Client::new();
    let calls = (0..10).map(|i| {
        let request = client
            .post(format!("{}/v1/processes/slow/invoke", urls[i % 2]))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(json!({ "input": { "word": "hi" } }).to_string());
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 200);
            serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap()
        }
    });
    let answers = futures::future::join_all(calls).await;
    assert_eq!(
        provider.calls(),
        1,
        "one provider call for ten misses on two servers"
    );
    assert!(
        answers.iter().all(|a| a["output"] == "echo: Say hi"),
        "{answers:?}"
    );
    assert_eq!(answers.iter().filter(|a| a["cacheHit"] == true).count(), 9);
    drop(servers);
}

#[tokio::test]
async fn the_rest_route_invokes_with_an_api_key() {
    let app = TestApp::new().await;
    let owner = app.owner("proc-rest").await;
    let schema = json!({ "type": "object", "required": ["name"] });
    let process = create_process(&app, &owner, "greet", schema).await;
    let v1 = published_template(&app, &owner, &process, "Hello {{ input.name }}").await;
    app.ok(Some(&owner.token), PROMOTE, json!({ "id": v1 }))
        .await;
    let data = app
        .ok(Some(&owner.token), "mutation { createApiKey(input: {name: \"svc\", scopes: [INVOKE]}) { secret userErrors { message } } }", json!({}))
        .await;
    let key = text(&data["createApiKey"]["secret"]);

    let post = |auth: Option<String>, path: &str, body: Value| {
        let mut request = Request::post(path).header("content-type", "application/json");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.body(Body::from(body.to_string())).unwrap()
    };
    let bearer = Some(format!("Bearer {key}"));
    let (status, body) = app
        .send(post(
            bearer.clone(),
            "/v1/processes/greet/invoke",
            json!({ "input": { "name": "Ada" } }),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], "Hello Ada");
    assert_eq!(body["environment"], "production");
    assert!(body["callId"].as_str().unwrap().starts_with("call_"));
    let (_, body) = app
        .send(post(
            bearer.clone(),
            "/v1/processes/greet/invoke",
            json!({ "input": { "name": "Ada" } }),
        ))
        .await;
    assert_eq!(body["cacheHit"], true);

    let (status, body) = app
        .send(post(
            bearer.clone(),
            "/v1/processes/greet/invoke",
            json!({ "input": {} }),
        ))
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("BAD_USER_INPUT"))
    );
    assert_eq!(body["error"]["field"], "input");
    let (status, _) = app
        .send(post(
            bearer.clone(),
            "/v1/processes/nope/invoke",
            json!({ "input": {} }),
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .send(post(
            None,
            "/v1/processes/greet/invoke",
            json!({ "input": {} }),
        ))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .send(post(
            bearer.clone(),
            "/v1/processes/greet/invoke",
            json!({ "inputs": {} }),
        ))
        .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("body"))
    );

    // The key invokes and does nothing else.
    let code = app
        .error_code(
            Some(&key),
            "query { processes { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");
    let data = app
        .ok(
            Some(&owner.token),
            "query { calls { edges { node { apiKey { name } user { email } status } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["calls"]["edges"][0]["node"]["apiKey"]["name"], "svc");

    // Usage counters: three of the key's calls reached the process (two answered, one
    // with bad input); the tenant made no others.
    let from = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let data = app
        .ok(
            Some(&owner.token),
            "query($from: DateTime!) { tenant { usage(from: $from) { calls errors cacheHits } apiKeys(first: 10) { edges { node { name usage(from: $from) { calls errors cacheHits } } } } } }",
            json!({ "from": from }),
        )
        .await;
    let expected = json!({ "calls": 3, "errors": 1, "cacheHits": 1 });
    assert_eq!(data["tenant"]["usage"], expected);
    assert_eq!(
        data["tenant"]["apiKeys"]["edges"][0]["node"]["usage"],
        expected
    );
}

/// The REST route answers a call the provider answered first and logs it right after
/// (`Logging::AfterAnswer`): the log row, with the answer's call id, lands shortly
/// after the response.
#[tokio::test]
async fn rest_calls_are_logged_right_after_their_answer() {
    let app = TestApp::new().await;
    let owner = app.owner("proc-rest-log").await;
    let process = create_process(&app, &owner, "greet", json!({})).await;
    let v1 = published_template(&app, &owner, &process, "Hello {{ input.name }}").await;
    app.ok(Some(&owner.token), PROMOTE, json!({ "id": v1 }))
        .await;
    let (key, _) = invoke_key(&app, &owner, "").await;
    let request = Request::post("/v1/processes/greet/invoke")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::from(
            json!({ "input": { "name": "Ada" }, "cache": "bypass" }).to_string(),
        ))
        .unwrap();
    let (status, body) = app.send(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["cacheHit"], false);

    logged(&app, &owner.token, body["callId"].as_str().unwrap()).await;
    let data = app
        .ok(
            Some(&owner.token),
            "query { calls { edges { node { id status cacheHit output } } } }",
            json!({}),
        )
        .await;
    let logged = data["calls"]["edges"].as_array().unwrap().clone();
    assert_eq!(logged.len(), 1, "the call was never logged");
    let call = &logged[0]["node"];
    assert_eq!(call["id"], body["callId"]);
    assert_eq!(
        (&call["status"], &call["cacheHit"], &call["output"]),
        (&json!("SUCCEEDED"), &json!(false), &json!("Hello Ada"))
    );
}

/// REST calls answered within the log queue's linger are logged a batch at a time: one
/// transaction per tenant, caller, process and hour, whose one statement inserts every
/// row, adds them to one rollup row and charges their tokens once. Another caller's
/// and another tenant's calls in the same batch go into their own transactions, and
/// each tenant reads only its own.
#[tokio::test]
async fn rest_calls_answered_together_are_logged_in_one_transaction_per_caller() {
    use sea_orm::{ConnectionTrait, Statement};

    // A linger long enough that every concurrent call below joins the first's batch.
    let app = TestApp::with_args(&[
        "--egress-allow",
        "127.0.0.1",
        "--call-log-linger-ms",
        "4000",
    ])
    .await;
    let a = app.owner("proc-batch-a").await;
    let b = app.owner("proc-batch-b").await;
    let provider = ChatServer::start([]).await;
    let secret = create_secret(&app, &a, "openai", "Bearer sk-test").await;
    let connection = http_connection(&app, &a, "openai", &provider.base_url, Some(&secret)).await;
    let summarise = create_process(&app, &a, "summarise", json!({})).await;
    let data = app
        .ok(Some(&a.token), CREATE_VERSION, json!({ "p": summarise, "prompt": "Summarise {{ input.text }}", "provider": "OPENAI_COMPATIBLE", "c": connection, "model": "gpt-test", "attempts": 1 }))
        .await;
    let version = text(&payload(&data, "createProcessVersion")["version"]["id"]);
    app.ok(Some(&a.token), PUBLISH, json!({ "id": version }))
        .await;
    app.ok(Some(&a.token), PROMOTE, json!({ "id": version }))
        .await;
    let data = app
        .ok(Some(&a.token), "mutation { setRateLimit(input: {tokensPerWindow: 1000000, windowSeconds: 60}) { rateLimit { id } userErrors { message } } }", json!({}))
        .await;
    assert!(payload(&data, "setRateLimit")["rateLimit"]["id"].is_string());
    let greet = create_process(&app, &b, "greet", json!({})).await;
    let v1 = published_template(&app, &b, &greet, "Hello {{ input.name }}").await;
    app.ok(Some(&b.token), PROMOTE, json!({ "id": v1 })).await;
    let (a1, a1_id) = invoke_key(&app, &a, "").await;
    let (a2, a2_id) = invoke_key(&app, &a, "").await;
    let (b1, b1_id) = invoke_key(&app, &b, "").await;

    let call = |key: &str, process: &str, input: Value| {
        let request = Request::post(format!("/v1/processes/{process}/invoke"))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"))
            .body(Body::from(
                json!({ "input": input, "cache": "bypass" }).to_string(),
            ))
            .unwrap();
        app.send(request)
    };
    let mut calls = Vec::new();
    for n in 0..8 {
        calls.push(call(
            &a1,
            "summarise",
            json!({ "text": format!("ticket {n} is late") }),
        ));
    }
    for n in 0..4 {
        calls.push(call(
            &a2,
            "summarise",
            json!({ "text": format!("order {n}") }),
        ));
        calls.push(call(&b1, "greet", json!({ "name": format!("Bo {n}") })));
    }
    let answers = futures::future::join_all(calls).await;
    let mut tokens = 0;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        if body["output"].as_str().unwrap().starts_with("echo") {
            tokens += body["usage"]["inputTokens"].as_i64().unwrap()
                + body["usage"]["outputTokens"].as_i64().unwrap();
        }
    }
    assert!(tokens > 0);
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK);
        let owner = if body["output"].as_str().unwrap().starts_with("Hello") {
            &b
        } else {
            &a
        };
        logged(&app, &owner.token, body["callId"].as_str().unwrap()).await;
    }

    // Rows one transaction wrote share its xmin.
    let admin = app.db.admin().await;
    let rows = admin
        .query_all(Statement::from_string(
            admin.get_database_backend(),
            format!(
                "SELECT api_key_id::text AS key, count(*) AS calls, \
                   count(DISTINCT xmin::text) AS transactions, min(xmin::text) AS tx \
                 FROM call_logs WHERE tenant_id IN ('{}', '{}') GROUP BY api_key_id",
                a.tenant_uuid(),
                b.tenant_uuid()
            ),
        ))
        .await
        .unwrap();
    let mut per_key = std::collections::HashMap::new();
    let mut transactions = std::collections::HashSet::new();
    for row in &rows {
        let key: String = row.try_get("", "key").unwrap();
        let calls: i64 = row.try_get("", "calls").unwrap();
        let written_in: i64 = row.try_get("", "transactions").unwrap();
        transactions.insert(row.try_get::<String>("", "tx").unwrap());
        per_key.insert(key, (calls, written_in));
    }
    let uuid = |id: &str| id[4..].parse::<uuid::Uuid>().unwrap().to_string();
    assert_eq!(per_key[&uuid(&a1_id)], (8, 1), "{per_key:?}");
    assert_eq!(per_key[&uuid(&a2_id)], (4, 1), "{per_key:?}");
    assert_eq!(per_key[&uuid(&b1_id)], (4, 1), "{per_key:?}");
    assert_eq!(
        transactions.len(),
        3,
        "each caller's batch is its own transaction"
    );
    // Each batch added to one rollup row, its latency histogram counting every call.
    let rollups = admin
        .query_all(Statement::from_string(
            admin.get_database_backend(),
            format!(
                "SELECT api_key_id::text AS key, calls, \
                   (SELECT sum(n) FROM unnest(latency_buckets) AS n)::bigint AS bucketed \
                 FROM process_usage_hourly WHERE tenant_id IN ('{}', '{}')",
                a.tenant_uuid(),
                b.tenant_uuid()
            ),
        ))
        .await
        .unwrap();
    let mut rolled = std::collections::HashMap::new();
    for row in &rollups {
        let key: String = row.try_get("", "key").unwrap();
        let calls: i64 = row.try_get("", "calls").unwrap();
        let bucketed: i64 = row.try_get("", "bucketed").unwrap();
        assert_eq!(
            calls, bucketed,
            "{key}: every call is in one latency bucket"
        );
        assert!(
            rolled.insert(key, calls).is_none(),
            "one rollup row per batch"
        );
    }
    assert_eq!(rolled[&uuid(&a1_id)], 8);
    assert_eq!(rolled[&uuid(&a2_id)], 4);
    assert_eq!(rolled[&uuid(&b1_id)], 4);

    // The rollups count every call; the tokens were charged once each.
    let usage = "query($from: DateTime!) { tenant { usage(from: $from) { calls errors } } calls(first: 100) { nodes { id } } rateLimits { monthTokens } }";
    let from = json!({ "from": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339() });
    let data = app.ok(Some(&a.token), usage, from.clone()).await;
    assert_eq!(
        data["tenant"]["usage"],
        json!({ "calls": 12, "errors": 0 }),
        "{data}"
    );
    assert_eq!(data["calls"]["nodes"].as_array().unwrap().len(), 12);
    assert_eq!(data["rateLimits"][0]["monthTokens"], tokens);
    let data = app.ok(Some(&b.token), usage, from).await;
    assert_eq!(
        data["tenant"]["usage"],
        json!({ "calls": 4, "errors": 0 }),
        "{data}"
    );
    assert_eq!(data["calls"]["nodes"].as_array().unwrap().len(), 4);
    assert_eq!(data["rateLimits"], json!([]));
}

#[tokio::test]
async fn upkeep_purges_expired_cache_entries_and_payloads_tenant_by_tenant() {
    use sea_orm::ConnectionTrait;

    let app = TestApp::new().await;
    let a = app.owner("proc-upkeep-a").await;
    let b = app.owner("proc-upkeep-b").await;
    for owner in [&a, &b] {
        let process = create_process(&app, owner, "greet", json!({})).await;
        published_template(&app, owner, &process, "Hello {{ input.name }}").await;
        for name in ["Ada", "Bo"] {
            invoke(
                &app,
                &owner.token,
                json!({ "p": "greet", "env": "SANDBOX", "input": { "name": name } }),
            )
            .await;
        }
    }
    // A's answer for Ada and the payloads of A's call for Ada are past their time.
    let admin = app.db.admin().await;
    admin
        .execute_unprepared(&format!(
            "UPDATE response_cache SET expires_at = now() - interval '1 hour' \
             WHERE tenant_id = '{a}' AND output = '\"Hello Ada\"'; \
             UPDATE call_logs SET payload_expires_at = now() - interval '1 hour' \
             WHERE tenant_id = '{a}' AND output = '\"Hello Ada\"'",
            a = a.tenant_uuid()
        ))
        .await
        .unwrap();
    // Reads hide expired payloads before any purge.
    let query = "query { calls { edges { node { input output } } } }";
    let data = app.ok(Some(&a.token), query, json!({})).await;
    let outputs: Vec<Value> = data["calls"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["output"].clone())
        .collect();
    assert_eq!(outputs, [json!("Hello Bo"), Value::Null]);

    let pass = trellis_core::processes::upkeep::upkeep_pass(&app.state.db, 1, 10)
        .await
        .unwrap();
    assert_eq!(
        (
            pass.tenants,
            pass.cache_entries_deleted,
            pass.payloads_cleared
        ),
        (1, 1, 1),
        "{pass:?}"
    );
    let counts = admin
        .query_one(stmt(
            "SELECT (SELECT count(*) FROM response_cache WHERE tenant_id = $1) AS a_cache, \
                    (SELECT count(*) FROM response_cache WHERE tenant_id = $2) AS b_cache, \
                    (SELECT count(*) FROM call_logs WHERE tenant_id = $1 AND input IS NULL) AS a_cleared, \
                    (SELECT count(*) FROM call_logs WHERE tenant_id = $2 AND input IS NULL) AS b_cleared",
            [a.tenant_uuid().into(), b.tenant_uuid().into()],
        ))
        .await
        .unwrap()
        .unwrap();
    let count = |c: &str| counts.try_get::<i64>("", c).unwrap();
    assert_eq!(
        (
            count("a_cache"),
            count("b_cache"),
            count("a_cleared"),
            count("b_cleared")
        ),
        (1, 2, 1, 0)
    );
    // Nothing is left to do; the purged answer is a miss again.
    let pass = trellis_core::processes::upkeep::upkeep_pass(&app.state.db, 1, 10)
        .await
        .unwrap();
    assert_eq!(pass, Default::default());
    let again = invoke(
        &app,
        &a.token,
        json!({ "p": "greet", "env": "SANDBOX", "input": { "name": "Ada" } }),
    )
    .await;
    assert_eq!(again["cacheHit"], false);

    // Payload retention goes on while a tenant is suspended.
    admin
        .execute_unprepared(&format!(
            "UPDATE tenants SET status = 'suspended' WHERE id = '{a}'; \
             UPDATE call_logs SET payload_expires_at = now() - interval '1 hour' \
             WHERE tenant_id = '{a}' AND output = '\"Hello Bo\"'",
            a = a.tenant_uuid()
        ))
        .await
        .unwrap();
    let pass = trellis_core::processes::upkeep::upkeep_pass(&app.state.db, 10, 10)
        .await
        .unwrap();
    assert_eq!((pass.payloads_cleared, pass.failed), (1, 0), "{pass:?}");
}

#[tokio::test]
async fn concurrent_promotions_queue_and_keep_a_consistent_history() {
    let app = TestApp::new().await;
    let owner = app.owner("proc-race").await;
    let t = owner.token.as_str();
    let process = create_process(&app, &owner, "greet", json!({})).await;
    let mut versions = Vec::new();
    for word in ["one", "two", "three", "four"] {
        versions.push(published_template(&app, &owner, &process, word).await);
    }
    let promotions = versions
        .iter()
        .map(|id| app.post(Some(t), PROMOTE, json!({ "id": id })));
    for (status, body) in futures::future::join_all(promotions).await {
        assert!(
            status.is_success() && body.get("errors").is_none(),
            "{body}"
        );
        assert_eq!(
            body["data"]["promoteProcessVersion"]["userErrors"],
            json!([])
        );
    }
    let data = app
        .ok(Some(t), "query { process(key: \"greet\") { productionVersion { id } promotions(first: 100) { environment fromVersion { id } toVersion { id } } } }", json!({}))
        .await;
    let p = &data["process"];
    // Oldest first: each move starts where the one before it ended.
    let mut moves: Vec<&Value> = p["promotions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["environment"] == "PRODUCTION")
        .collect();
    moves.reverse();
    assert_eq!(moves.len(), 4);
    assert_eq!(moves[0]["fromVersion"], Value::Null);
    for pair in moves.windows(2) {
        assert_eq!(pair[1]["fromVersion"]["id"], pair[0]["toVersion"]["id"]);
    }
    assert_eq!(p["productionVersion"]["id"], moves[3]["toVersion"]["id"]);
}

//! Request limits: no request, however nested, can crash the server, and the limits
//! that bound a query's cost do not stop a client from introspecting the schema at the
//! defaults (GraphiQL's docs explorer, graphql-codegen).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};

use crate::http::urlencode;
use crate::support::TestApp;

/// A request body with `query` and raw JSON `variables` (built as text: a value nested
/// 100,000 levels deep cannot be built as a `serde_json::Value` without recursion).
fn post_raw(query: &str, variables_json: &str) -> Request<Body> {
    let body = format!(
        "{{\"query\":{},\"variables\":{variables_json}}}",
        serde_json::to_string(query).unwrap()
    );
    Request::post("/graphql")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// A GET request, `None` when its URI would be too long to send.
fn get(query: &str, variables_json: &str) -> Option<Request<Body>> {
    let uri = format!(
        "/graphql?query={}&variables={}",
        urlencode(query),
        urlencode(variables_json)
    );
    (uri.len() < 65_000).then(|| Request::get(uri).body(Body::empty()).unwrap())
}

/// Sends `request`; it must be refused as bad input (HTTP 400, or 200 with a
/// BAD_USER_INPUT error) and must not have run.
async fn assert_refused(app: &TestApp, request: Request<Body>, what: &str) {
    let (status, body) = app.send(request).await;
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::OK,
        "{what}: {status}"
    );
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{what}: {body}"
    );
    assert!(
        body.get("data").is_none_or(Value::is_null),
        "{what}: {body}"
    );
}

#[tokio::test]
async fn input_nested_thousands_of_levels_deep_is_refused_and_the_server_stays_up() {
    let app = TestApp::new().await;
    for levels in [1_000, 1_500, 5_000, 100_000] {
        let list = format!("{}\"x\"{}", "[".repeat(levels), "]".repeat(levels));
        let object = format!("{}1{}", "{a: ".repeat(levels), "}".repeat(levels));
        let json_object = format!("{}1{}", "{\"a\": ".repeat(levels), "}".repeat(levels));
        let cases = [
            (
                "list argument",
                format!("{{ nodes(ids: {list}) {{ id }} }}"),
                "{}".to_owned(),
            ),
            (
                "object argument",
                format!("{{ workflows(filter: {object}) {{ totalCount }} }}"),
                "{}".to_owned(),
            ),
            (
                "variable default",
                format!("query($v: [ID!] = {list}) {{ nodes(ids: $v) {{ id }} }}"),
                "{}".to_owned(),
            ),
            (
                "variable value (list)",
                "query($v: [ID!]!) { nodes(ids: $v) { id } }".to_owned(),
                format!("{{\"v\": {list}}}"),
            ),
            (
                "variable value (object)",
                "query($v: WorkflowFilter) { workflows(filter: $v) { totalCount } }".to_owned(),
                format!("{{\"v\": {json_object}}}"),
            ),
        ];
        for (what, query, variables) in &cases {
            assert_refused(
                &app,
                post_raw(query, variables),
                &format!("POST {what} {levels}"),
            )
            .await;
            // A URI longer than HTTP allows here (64 KiB) is refused by hyper with
            // 414 before any handler runs.
            if let Some(get) = get(query, variables) {
                assert_refused(&app, get, &format!("GET {what} {levels}")).await;
            }
        }
    }
    // Still serving, and ordinary nesting still works.
    let user = app.sign_up("nested@x.test").await;
    let data = app
        .ok(
            Some(&user.token),
            "{ nodes(ids: [\"wf_x\"]) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(data["nodes"], json!([null]));
}

/// The introspection query graphql-js builds (GraphiQL and graphql-codegen send it),
/// printed by the `graphql` package that the web assets pin.
pub(crate) fn introspection_query(options: &str) -> String {
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web");
    let script = format!(
        "import {{ getIntrospectionQuery }} from 'graphql'; \
         process.stdout.write(getIntrospectionQuery({options}));"
    );
    let output = std::process::Command::new("node")
        .args(["--input-type=module", "-e", &script])
        .current_dir(web)
        .output()
        .expect("node runs (just test installs web/node_modules)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_standard_introspection_query_works_at_the_default_limits() {
    let app = TestApp::new().await;
    // GraphiQL 3+/ruru asks for input value deprecation; codegen uses the defaults;
    // the third asks for everything graphql-js can.
    for options in [
        "{ inputValueDeprecation: true }",
        "{}",
        "{ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, \
           schemaDescription: true, inputValueDeprecation: true }",
    ] {
        let query = introspection_query(options);
        let data = app.ok(None, &query, json!({})).await;
        let types = data["__schema"]["types"].as_array().unwrap();
        let workflow = types
            .iter()
            .find(|t| t["name"] == "Workflow")
            .expect("Workflow is introspectable");
        let key = workflow["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "key")
            .unwrap();
        assert!(
            key["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{options}: {key}"
        );
    }
    // The depth limit still holds for everything else: 13 levels of retryOf.
    let user = app.sign_up("deep@x.test").await;
    let deep = format!(
        "{{ nodes(ids: [\"run_x\"]) {{ ... on WorkflowRun {{ {} id {} }} }} }}",
        "retryOf {".repeat(11),
        "}".repeat(11)
    );
    assert_eq!(
        app.error_code(Some(&user.token), &deep, json!({})).await,
        "BAD_USER_INPUT"
    );
    let shallow = format!(
        "{{ nodes(ids: [\"run_x\"]) {{ ... on WorkflowRun {{ {} id {} }} }} }}",
        "retryOf {".repeat(10),
        "}".repeat(10)
    );
    let data = app.ok(Some(&user.token), &shallow, json!({})).await;
    assert_eq!(data["nodes"], json!([null]));
}

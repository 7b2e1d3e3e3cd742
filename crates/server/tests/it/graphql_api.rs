//! API conventions: input errors as userErrors with a code and field and no SQL text,
//! keyset pagination, totalCount on demand, statement counts that do not grow with the
//! page, and the committed schema matching the code.

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::support::TestApp;

#[tokio::test]
async fn bad_input_and_conflicts_are_user_errors_naming_the_field() {
    let app = TestApp::new().await;
    let owner = app.owner("taken").await;
    let other = app.sign_up("other@x.test").await;
    let (_, body) = app
        .post(Some(&other.token), "mutation { createTenant(input: {slug: \"taken\", name: \"Mine\"}) { tenant { id } userErrors { field message code } } }", json!({}))
        .await;
    let error = &body["data"]["createTenant"]["userErrors"][0];
    assert_eq!(error["code"], "CONFLICT");
    assert_eq!(error["field"], "slug");
    let text = body.to_string().to_lowercase();
    for leak in [
        "duplicate key",
        "constraint",
        "insert",
        "sqlx",
        "tenants_slug_key",
    ] {
        assert!(!text.contains(leak), "leaked {leak}: {body}");
    }
    // The failed request left nothing behind: the user has no tenant.
    let data = app
        .ok(
            Some(&other.token),
            "{ viewer { memberships { role } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["viewer"]["memberships"], json!([]));

    let cases = [
        ("mutation { signUp(input: {email: \"nope\", name: \"x\", password: \"long enough pw\"}) { userErrors { field code } } }", "signUp", "email"),
        ("mutation { signUp(input: {email: \"a@b.co\", name: \"x\", password: \"short\"}) { userErrors { field code } } }", "signUp", "password"),
        ("mutation { signUp(input: {email: \"OWNER@taken.test\", name: \"x\", password: \"long enough pw\"}) { userErrors { field code } } }", "signUp", "email"),
    ];
    for (query, field, expected) in cases {
        let data = app.ok(None, query, json!({})).await;
        assert_eq!(data[field]["userErrors"][0]["field"], expected, "{query}");
    }
    let data = app.ok(Some(&owner.token), "mutation { createApiKey(input: {name: \"x\", scopes: []}) { userErrors { field code } } }", json!({})).await;
    assert_eq!(
        data["createApiKey"]["userErrors"][0],
        json!({ "field": "scopes", "code": "BAD_USER_INPUT" })
    );
    let (_, body) = app
        .post(
            Some(&owner.token),
            "{ tenant { members(first: 101) { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"],
        json!({ "code": "BAD_USER_INPUT", "field": "first" })
    );
}

#[tokio::test]
async fn keyset_pages_walk_the_whole_list_once() {
    let app = TestApp::new().await;
    let owner = app.owner("pages").await;
    for i in 0..7 {
        app.ok(Some(&owner.token), &format!("mutation {{ inviteMember(input: {{email: \"p{i}@x.test\", role: VIEWER}}) {{ token }} }}"), json!({})).await;
    }
    let query = "query($after: String) { tenant { invitations(first: 3, after: $after, orderBy: CREATED_AT_ASC) { totalCount pageInfo { hasNextPage endCursor } edges { node { email } } } } }";
    let (mut after, mut seen) = (serde_json::Value::Null, vec![]);
    loop {
        let data = app
            .ok(Some(&owner.token), query, json!({ "after": after }))
            .await;
        let page = &data["tenant"]["invitations"];
        assert_eq!(page["totalCount"], 7);
        seen.extend(
            page["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["email"].as_str().unwrap().to_owned()),
        );
        if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(
        seen,
        (0..7).map(|i| format!("p{i}@x.test")).collect::<Vec<_>>()
    );
    let data = app
        .ok(
            Some(&owner.token),
            "{ tenant { invitations(first: 2, filter: {search: \"P6\"}) { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["tenant"]["invitations"]["totalCount"], 1);
}

#[tokio::test]
async fn statements_per_request_do_not_grow_with_the_page() {
    let app = TestApp::new().await;
    let owner = app.owner("dash").await;
    for i in 0..12 {
        app.member(&owner, &format!("m{i}@dash.test"), "VIEWER")
            .await;
        app.ok(
            Some(&owner.token),
            &format!(
                "mutation {{ updateTenant(input: {{name: \"n{i}\"}}) {{ tenant {{ id }} }} }}"
            ),
            json!({}),
        )
        .await;
    }
    let dashboard = "query($n: Int!) { tenant { members(first: $n) { totalCount edges { node { role user { email } tenant { slug } } } } apiKeys(first: $n) { edges { node { name createdBy { email } } } } auditEvents(first: $n) { edges { node { action actor { email } } } } } }";
    let mut counts = vec![];
    for n in [1, 5, 13] {
        for _ in 0..3 {
            let before = app.state.statements.load(Ordering::Relaxed);
            let data = app
                .ok(Some(&owner.token), dashboard, json!({ "n": n }))
                .await;
            counts.push(app.state.statements.load(Ordering::Relaxed) - before);
            let edges = data["tenant"]["members"]["edges"].as_array().unwrap().len();
            assert_eq!(edges, n as usize);
        }
    }
    // An N+1 would add a statement per row (12 between n = 1 and n = 13). List
    // resolvers prefetch their rows' relations in one batch each, so every run costs
    // exactly the same, however the runtime schedules the rows.
    assert!(
        counts.iter().all(|&c| c == counts[0]),
        "statements per request changed with the page: {counts:?}"
    );
}

#[test]
fn the_committed_schema_matches_the_code() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema.graphql"))
            .unwrap();
    assert!(
        committed == trellis_graphql::export_sdl(),
        "schema.graphql is stale: run `just schema`"
    );
}

#[tokio::test]
async fn connections_answer_the_same_in_place_and_through_fragments() {
    // Plain selections of a connection and its edges resolve in place
    // (crates/graphql/src/pagination.rs); fragments take async-graphql's own path. Both
    // must give the same data and the same error paths.
    let app = TestApp::new().await;
    let owner = app.owner("pages-in-place").await;
    for key in ["one", "two", "three"] {
        app.ok(
            Some(&owner.token),
            "mutation($k: String!) { createWorkflow(input: {key: $k, name: $k}) { workflow { id } } }",
            json!({ "k": key }),
        )
        .await;
    }
    // `stats` with its range reversed fails in every node: an error inside each edge.
    let failing = " stats(period: DAY, from: \"2026-01-02T00:00:00Z\", to: \"2026-01-01T00:00:00Z\") { total }";
    let variants = |edge: &str| {
        let connection = format!(
            "__typename totalCount pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }} nodes {{ key }} edges {{ {edge} }} keys: edges {{ node {{ key }} }}"
        );
        let plain = format!("{{ workflows(first: 2) {{ {connection} }} }}");
        let fragments =
            format!("{{ workflows(first: 2) {{ ... on WorkflowConnection {{ {connection} }} }} }}");
        let spread = connection.replace(&format!("edges {{ {edge} }}"), "edges { ...E }");
        let edge_fragments = format!(
            "{{ workflows(first: 2) {{ {spread} }} }} fragment E on WorkflowEdge {{ {edge} }}"
        );
        [plain, fragments, edge_fragments]
    };
    let edge = "__typename cursor node { key again: key runs(first: 2) { totalCount edges { cursor node { id } } } }";
    let [plain, fragments, edge_fragments] = variants(edge);
    let (_, plain) = app.post(Some(&owner.token), &plain, json!({})).await;
    let page = &plain["data"]["workflows"];
    assert_eq!(page["__typename"], "WorkflowConnection");
    assert_eq!(page["totalCount"], 3);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let edges = page["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0]["__typename"], "WorkflowEdge");
    assert_eq!(edges[0]["node"]["key"], "three");
    assert_eq!(edges[1]["node"]["again"], "two");
    assert_eq!(page["pageInfo"]["startCursor"], edges[0]["cursor"]);
    assert_eq!(page["pageInfo"]["endCursor"], edges[1]["cursor"]);
    assert_eq!(page["keys"][1]["node"]["key"], "two");
    assert_eq!(edges[0]["node"]["runs"]["totalCount"], 0);
    for query in [fragments, edge_fragments] {
        let (_, other) = app.post(Some(&owner.token), &query, json!({})).await;
        assert_eq!(other["data"], plain["data"], "{query}");
    }
    // With the failing field: the same error paths on every path through the code, and
    // the same nulls: `stats`, `node`, the edges and `workflows` are all non-null, so
    // the error nulls `data` itself.
    let paths_of = |body: &serde_json::Value| {
        let mut paths: Vec<_> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].clone())
            .collect();
        paths.sort_by_key(|p| p.to_string());
        paths
    };
    let with_stats = format!("{}{failing} }}", &edge[..edge.len() - 2]);
    let expected: Vec<_> = [0, 1]
        .map(|i| json!(["workflows", "edges", i, "node", "stats"]))
        .to_vec();
    for query in variants(&with_stats) {
        let (_, body) = app.post(Some(&owner.token), &query, json!({})).await;
        assert_eq!(body["data"], serde_json::Value::Null, "{query}: {body}");
        assert_eq!(paths_of(&body), expected, "{query}");
    }
}

/// A request whose COMMIT fails (here a deferred constraint trigger refuses at commit
/// time) is an error for its client, not a success: nothing was saved.
#[tokio::test]
async fn a_failed_commit_is_reported_as_an_error() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::new().await;
    let owner = app.owner("commit").await;
    let admin = app.db.admin().await;
    admin
        .execute_unprepared(
            "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$; \
             CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON clients \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit();",
        )
        .await
        .unwrap();
    let (status, body) = app
        .post(
            Some(&owner.token),
            "mutation { createClient(input: {name: \"Doomed\"}) { client { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        status,
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL");
    assert!(body.get("data").is_none(), "{body}");
    assert!(!body.to_string().contains("refused at commit"), "{body}");
    let data = app
        .ok(Some(&owner.token), "{ clients { totalCount } }", json!({}))
        .await;
    assert_eq!(data["clients"]["totalCount"], 0);
}

/// PostgreSQL cannot store a NUL character, and a timestamp beyond its range fails a
/// statement: both are bad input, named, never INTERNAL. Anonymous login included.
#[tokio::test]
async fn nul_characters_and_out_of_range_cursors_are_bad_input() {
    let app = TestApp::new().await;
    let owner = app.owner("nul").await;
    let (status, body) = app
        .post(
            None,
            "mutation($e: String!) { login(input: {email: $e, password: \"whatever pw\"}) { session { accessToken } } }",
            json!({ "e": "a\u{0}@x.test" }),
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::OK);
    assert_eq!(
        body["errors"][0]["extensions"],
        json!({ "code": "BAD_USER_INPUT", "field": "e" })
    );
    let cases = [
        (
            "mutation($i: CreateClientInput!) { createClient(input: $i) { client { id } } }",
            json!({ "i": { "name": "Nul\u{0}Corp" } }),
            Some("i.name"),
        ),
        (
            "{ clients(filter: {search: \"a\\u0000b\"}) { totalCount } }",
            json!({}),
            None,
        ),
        (
            "query($s: String) { workflows(filter: {search: $s}) { totalCount } }",
            json!({ "s": "x\u{0}" }),
            Some("s"),
        ),
    ];
    for (query, variables, field) in cases {
        let (_, body) = app.post(Some(&owner.token), query, variables).await;
        let error = &body["errors"][0];
        assert_eq!(
            error["extensions"]["code"], "BAD_USER_INPUT",
            "{query}: {body}"
        );
        if let Some(field) = field {
            assert_eq!(error["extensions"]["field"], field, "{body}");
        }
    }
    // Cursors a client made up, with years PostgreSQL does not have.
    use base64::Engine;
    // Year -93,000 (chrono has it, PostgreSQL does not), year 190,000, and past chrono.
    for micros in [
        -3_000_000_000_000_000_000,
        6_000_000_000_000_000_000,
        i64::MAX,
    ] {
        let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{micros}|{}", uuid::Uuid::nil()));
        let (_, body) = app
            .post(
                Some(&owner.token),
                "query($a: String) { clients(first: 5, after: $a) { totalCount } }",
                json!({ "a": cursor }),
            )
            .await;
        assert_eq!(
            body["errors"][0]["extensions"],
            json!({ "code": "BAD_USER_INPUT", "field": "after" }),
            "{micros}: {body}"
        );
    }
}

/// Tenant settings are checked when saved, each problem on its path: a bad redaction
/// pattern saved once used to make every later log append of the tenant fail.
#[tokio::test]
async fn tenant_settings_are_validated_on_save() {
    let app = TestApp::new().await;
    let owner = app.owner("settings").await;
    let save = "mutation($s: JSON!) { updateTenant(input: {settings: $s}) { tenant { settings } userErrors { field code } } }";
    let bad = json!({
        "logRetentionDays": "forever",
        "runRetentionDays": -5,
        "redaction": { "patterns": ["("] },
        "colour": "blue"
    });
    let data = app.ok(Some(&owner.token), save, json!({ "s": bad })).await;
    let mut fields: Vec<String> = data["updateTenant"]["userErrors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "settings.colour",
            "settings.logRetentionDays",
            "settings.redaction.patterns.0",
            "settings.runRetentionDays"
        ],
        "{data}"
    );
    let good = json!({ "logRetentionDays": 14, "redaction": { "patterns": ["order-[0-9]+"] } });
    let data = app.ok(Some(&owner.token), save, json!({ "s": good })).await;
    assert_eq!(data["updateTenant"]["userErrors"], json!([]));
    assert_eq!(data["updateTenant"]["tenant"]["settings"], good);
}

/// A field error nulls what the specification says: the field itself when it may be
/// null, else its nearest nullable parent. async-graphql left the key out instead, so
/// a client found fields it asked for missing.
#[tokio::test]
async fn field_errors_null_the_nearest_nullable_field() {
    let app = TestApp::new().await;
    let user = app.sign_up("nulls@x.test").await;
    // `members` (non-null) fails: the new tenant is not the active one yet. Its parent
    // `tenant` is nullable, so it is null, and the key is there.
    let (_, body) = app
        .post(
            Some(&user.token),
            "mutation { createTenant(input: {slug: \"nulls\", name: \"n\"}) { tenant { slug members { totalCount } } userErrors { code } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["path"],
        json!(["createTenant", "tenant", "members"])
    );
    let payload = body["data"]["createTenant"].as_object().unwrap();
    assert_eq!(
        payload.get("tenant"),
        Some(&serde_json::Value::Null),
        "{body}"
    );
}

/// Every object's fields follow the query's order, as the specification says: at the
/// root, under `node(id:)`, in fragments and in lists. async-graphql inserts fields
/// as they complete, so one that waits on a loader used to land after the others, and
/// `node(id:)` answered the same selection in different orders.
#[tokio::test]
async fn fields_come_back_in_the_order_asked() {
    let app = TestApp::new().await;
    let owner = app.owner("order").await;
    let workflow = crate::runs::active_workflow(&app, &owner, "ordered").await;
    let data = app
        .ok(
            Some(&owner.token),
            "mutation($w: ID!) { startRun(input: {workflowId: $w}) { run { id } } }",
            json!({ "w": workflow }),
        )
        .await;
    let run = data["startRun"]["run"]["id"].clone();
    assert!(run.is_string());
    let query = "query($w: ID!, $r: ID!) {
        runs: workflows { edges { node { runs { edges { node { ... on WorkflowRun { workflow { key } status version { number } id stepRuns { stepKey } createdAt } } } } } } }
        wf: node(id: $w) { ... on Workflow { versions { steps { key } number } activeVersion { number } key triggers { id } name } id __typename }
        run: node(id: $r) { ...R id }
        viewer { role user { email } activeTenant { slug members { totalCount } name } }
    }
    fragment R on WorkflowRun { workflow { versions { number } key } status stepRuns { stepKey } createdAt }";
    let body = json!({ "query": query, "variables": { "w": workflow, "r": run } }).to_string();
    // The root's keys, then each root field's keys (nested objects included) in the
    // query's order, searched in that field's part of the text.
    let root = ["\"runs\":", "\"wf\":", "\"run\":", "\"viewer\":"];
    let parts: [&[&str]; 4] = [
        &[
            "\"workflow\":{\"key\"",
            "\"status\"",
            "\"version\":{\"number\"",
            "\"id\"",
            "\"stepRuns\":[",
            "\"createdAt\"",
        ],
        &[
            "\"versions\":[{\"steps\":[",
            "\"number\":1}]",
            "\"activeVersion\":{",
            "\"key\":\"ordered\"",
            "\"triggers\":[",
            "\"name\":",
            "\"id\":\"wf_",
            "\"__typename\":\"Workflow\"}",
        ],
        &[
            "\"workflow\":{\"versions\":[{\"number\":1}],\"key\":\"ordered\"}",
            "\"status\"",
            "\"stepRuns\"",
            "\"createdAt\"",
            "\"id\":\"run_",
        ],
        &[
            "\"role\"",
            "\"user\":{\"email\"",
            "\"activeTenant\":{\"slug\"",
            "\"members\":{\"totalCount\"",
            "\"name\"",
        ],
    ];
    for _ in 0..20 {
        use tower::ServiceExt;
        let request = axum::http::Request::post("/graphql")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", owner.token))
            .body(axum::body::Body::from(body.clone()))
            .unwrap();
        let response = app.router.clone().oneshot(request).await.unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        // The raw text: a parsed map would not keep the order.
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(!text.contains("\"errors\""), "{text}");
        let mut starts: Vec<usize> = root
            .iter()
            .map(|key| {
                text.find(key)
                    .unwrap_or_else(|| panic!("{key} missing: {text}"))
            })
            .collect();
        assert!(starts.is_sorted(), "root out of order: {text}");
        starts.push(text.len());
        for (i, keys) in parts.iter().enumerate() {
            let part = &text[starts[i]..starts[i + 1]];
            let mut from = 0;
            for key in *keys {
                let at = part[from..]
                    .find(key)
                    .unwrap_or_else(|| panic!("{key} missing or out of order in {part}"));
                from += at + key.len();
            }
        }
    }
}

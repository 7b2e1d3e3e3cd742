//! Live updates across server processes: two servers on one database, each with its
//! own LISTEN connection; a change made over HTTP on one arrives on a graphql-ws
//! subscription held by the other, and never on another tenant's subscription, not
//! even when a NOTIFY payload is forged.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use trellis_core::scope::stmt;
use trellis_server::app;
use trellis_server::http::{router, HttpConfig};

use crate::runs::active_workflow;
use crate::support::{test_config, Member, TestApp};

/// How long a message that must arrive may take.
pub(crate) const ARRIVES: Duration = Duration::from_secs(10);
/// How long a subscription is watched for a message that must not arrive.
const QUIET: Duration = Duration::from_millis(1500);

const START: &str = "mutation($w: ID!) { startRun(input: {workflowId: $w}) { run { id status } userErrors { code message } } }";
const RUNS_UPDATED: &str =
    "subscription($w: ID) { runsUpdated(workflowId: $w) { id status workflow { id key } } }";
const RUN_UPDATED: &str =
    "subscription($r: ID!) { runUpdated(runId: $r) { id status stepRuns { stepKey status } } }";

/// Serves `router` on a loopback port.
pub(crate) async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

/// Two servers on one test database: A is the test app's own, B a second process's
/// worth of state (its own pool and its own listener).
pub(crate) struct Pair {
    pub(crate) app: TestApp,
    pub(crate) a: SocketAddr,
    pub(crate) b: SocketAddr,
}

impl Pair {
    pub(crate) async fn new() -> Self {
        let app = TestApp::new().await;
        let config = test_config(&app.db.app_url, &[]);
        let state_b = app::build_state(&config, &app.db.app_url, app::jwt_keys(&config).unwrap())
            .await
            .unwrap();
        let http = HttpConfig {
            request_timeout: Duration::from_secs(30),
            body_limit: 1 << 20,
            cors_origins: vec![],
            metrics_route: true,
        };
        let a = serve(app.router.clone()).await;
        let b = serve(router(state_b, &http)).await;
        Self { app, a, b }
    }
}

/// POSTs a GraphQL request to a server over a real TCP connection; returns `data`.
pub(crate) async fn post(addr: SocketAddr, token: &str, query: &str, variables: Value) -> Value {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let request = format!(
        "POST /graphql HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    let body: Value = serde_json::from_str(body).unwrap();
    assert!(body.get("errors").is_none(), "{body:#}");
    body["data"].clone()
}

/// Starts a run through server `addr`; returns its ID.
async fn start(addr: SocketAddr, token: &str, workflow: &str) -> String {
    let data = post(addr, token, START, json!({ "w": workflow })).await;
    assert_eq!(data["startRun"]["userErrors"], json!([]), "{data:#}");
    data["startRun"]["run"]["id"].as_str().unwrap().to_owned()
}

/// One graphql-ws connection holding one subscription.
pub(crate) struct Subscriber(WebSocketStream<MaybeTlsStream<TcpStream>>);

/// Opens a graphql-ws connection; returns the socket and the server's reply to
/// `connection_init` (a message type, or `close <code>`).
async fn connect(addr: SocketAddr, payload: Value) -> (Subscriber, String) {
    let mut request = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut subscriber = Subscriber(socket);
    subscriber
        .send(json!({ "type": "connection_init", "payload": payload }))
        .await;
    let reply = match tokio::time::timeout(ARRIVES, subscriber.0.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Value>(&text).unwrap()["type"]
            .as_str()
            .unwrap()
            .to_owned(),
        Ok(Some(Ok(Message::Close(frame)))) => format!(
            "close {}",
            frame.map(|f| u16::from(f.code)).unwrap_or_default()
        ),
        other => format!("{other:?}"),
    };
    (subscriber, reply)
}

impl Subscriber {
    /// Signs in with `token` and subscribes.
    pub(crate) async fn open(addr: SocketAddr, token: &str, query: &str, variables: Value) -> Self {
        let (mut subscriber, reply) =
            connect(addr, json!({ "Authorization": format!("Bearer {token}") })).await;
        assert_eq!(reply, "connection_ack");
        subscriber
            .send(json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await;
        subscriber
    }

    async fn send(&mut self, message: Value) {
        self.0
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// The next message of the subscription within `wait`, if any.
    pub(crate) async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(wait, self.0.next()).await.ok()??;
            match message.unwrap() {
                Message::Text(text) => return Some(serde_json::from_str(&text).unwrap()),
                Message::Close(frame) => {
                    return Some(json!({ "type": "close", "frame": format!("{frame:?}") }))
                }
                _ => continue,
            }
        }
    }

    /// The next `next` message's data; fails on anything else.
    pub(crate) async fn data(&mut self) -> Value {
        let message = self
            .next_within(ARRIVES)
            .await
            .expect("a subscription message in time");
        assert_eq!(message["type"], "next", "{message:#}");
        assert!(message["payload"].get("errors").is_none(), "{message:#}");
        message["payload"]["data"].clone()
    }

    /// Asserts that nothing arrives for a while.
    pub(crate) async fn assert_quiet(&mut self) {
        if let Some(message) = self.next_within(QUIET).await {
            panic!("expected no message, got {message:#}");
        }
    }
}

/// The UUID behind a global ID (`run_…`, `wf_…`).
fn uuid_of(id: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(id.split_once('_').unwrap().1).unwrap()
}

/// Starts runs of `workflow` through `addr` until one reaches `subscriber` (whose
/// subscription may not be listening yet when it was opened); returns that run's ID.
async fn until_live(
    addr: SocketAddr,
    token: &str,
    workflow: &str,
    subscriber: &mut Subscriber,
) -> String {
    for _ in 0..20 {
        let run = start(addr, token, workflow).await;
        while let Some(message) = subscriber.next_within(Duration::from_millis(500)).await {
            assert_eq!(message["type"], "next", "{message:#}");
            if message["payload"]["data"]["runsUpdated"]["id"] == run.as_str() {
                return run;
            }
        }
    }
    panic!("the subscription never delivered");
}

#[tokio::test]
async fn a_change_on_one_server_reaches_the_other_and_never_another_tenant() {
    let pair = Pair::new().await;
    let app = &pair.app;
    let one = app.owner("live-one").await;
    let two = app.owner("live-two").await;
    let flow_one = active_workflow(app, &one, "live").await;
    let flow_two = active_workflow(app, &two, "live").await;

    // Both subscribe on B; each is proven live by a run of its own tenant made on A.
    let mut sub_one =
        Subscriber::open(pair.b, &one.token, RUNS_UPDATED, json!({ "w": flow_one })).await;
    let mut sub_two = Subscriber::open(pair.b, &two.token, RUNS_UPDATED, json!({})).await;
    until_live(pair.a, &two.token, &flow_two, &mut sub_two).await;
    until_live(pair.a, &one.token, &flow_one, &mut sub_one).await;
    // Tenant one's runs above were made while tenant two's subscription was live.
    sub_two.assert_quiet().await;

    // A start and a cancel made on A arrive on B, read afresh with their relations.
    let run = start(pair.a, &one.token, &flow_one).await;
    let started = sub_one.data().await;
    assert_eq!(started["runsUpdated"]["id"], run.as_str());
    assert_eq!(started["runsUpdated"]["status"], "PENDING");
    assert_eq!(started["runsUpdated"]["workflow"]["id"], flow_one.as_str());
    let cancelled = post(
        pair.a,
        &one.token,
        "mutation($id: ID!) { cancelRun(input: {id: $id}) { run { status } userErrors { code } } }",
        json!({ "id": run }),
    )
    .await;
    assert_eq!(cancelled["cancelRun"]["run"]["status"], "CANCELLED");
    let update = sub_one.data().await;
    assert_eq!(update["runsUpdated"]["id"], run.as_str());
    assert_eq!(update["runsUpdated"]["status"], "CANCELLED");
    sub_two.assert_quiet().await;

    // Tenant two's own change still arrives, and is the next thing it sees.
    let own = start(pair.a, &two.token, &flow_two).await;
    assert_eq!(sub_two.data().await["runsUpdated"]["id"], own.as_str());
    // The workflow filter holds: tenant one's subscription saw nothing of that.
    sub_one.assert_quiet().await;

    // A forged announcement naming tenant one and tenant two's run is re-read in
    // tenant one's scope, where the run does not exist: nothing is sent.
    let pool = app.db.app_pool(1).await;
    let forged = json!({
        "tenantId": one.tenant_uuid(),
        "runId": uuid_of(&own),
        "workflowId": uuid_of(&flow_one),
        "status": "RUNNING",
    });
    pool.execute(stmt(
        "SELECT pg_notify('trellis_runs', $1)",
        [forged.to_string().into()],
    ))
    .await
    .unwrap();
    sub_one.assert_quiet().await;
    sub_two.assert_quiet().await;
}

#[tokio::test]
async fn run_updated_follows_one_run_and_a_foreign_run_is_not_found() {
    let pair = Pair::new().await;
    let app = &pair.app;
    let one = app.owner("follow-one").await;
    let two = app.owner("follow-two").await;
    let flow_one = active_workflow(app, &one, "follow").await;
    let flow_two = active_workflow(app, &two, "follow").await;
    let run = start(pair.a, &one.token, &flow_one).await;
    let other = start(pair.a, &two.token, &flow_two).await;

    // The run as it is now, then each change made on A.
    let mut follower = Subscriber::open(pair.b, &one.token, RUN_UPDATED, json!({ "r": run })).await;
    let now = follower.data().await;
    assert_eq!(now["runUpdated"]["id"], run.as_str());
    assert_eq!(now["runUpdated"]["status"], "PENDING");
    let mut other_follower =
        Subscriber::open(pair.b, &two.token, RUN_UPDATED, json!({ "r": other })).await;
    assert_eq!(
        other_follower.data().await["runUpdated"]["status"],
        "PENDING"
    );

    let (runner, _) = app.api_key(&one, "RUNNER").await;
    let claimed = post(
        pair.a,
        &runner,
        "mutation { claimRuns(input: {limit: 5, leaseSeconds: 60}) { leases { run { id status } } userErrors { code } } }",
        json!({}),
    )
    .await;
    assert_eq!(claimed["claimRuns"]["leases"][0]["run"]["id"], run.as_str());
    let claimed_status = claimed["claimRuns"]["leases"][0]["run"]["status"].clone();
    let update = follower.data().await;
    assert_eq!(update["runUpdated"]["id"], run.as_str());
    assert_eq!(update["runUpdated"]["status"], claimed_status);
    assert_eq!(update["runUpdated"]["stepRuns"][0]["stepKey"], "a");
    other_follower.assert_quiet().await;

    // Another tenant's run, and a made-up one, are NOT_FOUND, and the stream ends.
    for id in [
        other.clone(),
        format!("run_{}", uuid::Uuid::now_v7().simple()),
    ] {
        let mut foreign =
            Subscriber::open(pair.b, &one.token, RUN_UPDATED, json!({ "r": id })).await;
        let message = foreign.next_within(ARRIVES).await.unwrap();
        assert_eq!(message["type"], "next", "{message:#}");
        assert_eq!(
            message["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
            "{message:#}"
        );
        let end = foreign.next_within(ARRIVES).await.unwrap();
        assert_eq!(end["type"], "complete", "{end:#}");
    }
    let mut foreign_logs = Subscriber::open(
        pair.b,
        &one.token,
        "subscription($r: ID!) { logAppended(runId: $r) { runId count } }",
        json!({ "r": other }),
    )
    .await;
    let message = foreign_logs.next_within(ARRIVES).await.unwrap();
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{message:#}"
    );
}

#[tokio::test]
async fn the_listener_reconnects_and_followers_read_again() {
    let pair = Pair::new().await;
    let app = &pair.app;
    let one = app.owner("reconnect").await;
    let flow = active_workflow(app, &one, "reconnect").await;
    let run = start(pair.a, &one.token, &flow).await;
    let mut follower = Subscriber::open(pair.b, &one.token, RUN_UPDATED, json!({ "r": run })).await;
    assert_eq!(follower.data().await["runUpdated"]["status"], "PENDING");

    // Cut every listener's connection, as a database restart or a network fault would.
    let admin = app.db.admin().await;
    let cut = admin
        .query_all(stmt(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            [],
        ))
        .await
        .unwrap();
    assert!(cut.len() >= 2, "both servers listen");
    // Announcements in the gap may be lost, so the follower reads its run again...
    let again = follower.data().await;
    assert_eq!(again["runUpdated"]["id"], run.as_str());
    assert_eq!(again["runUpdated"]["status"], "PENDING");
    // ...and hears the changes made after the listener is back. (The start's own
    // announcement may reach this server late, so one more PENDING read may come
    // first.)
    post(
        pair.a,
        &one.token,
        "mutation($id: ID!) { cancelRun(input: {id: $id}) { run { status } } }",
        json!({ "id": run }),
    )
    .await;
    let mut status = follower.data().await["runUpdated"]["status"].clone();
    if status == "PENDING" {
        status = follower.data().await["runUpdated"]["status"].clone();
    }
    assert_eq!(status, "CANCELLED");
}

#[tokio::test]
async fn log_appends_reach_only_their_runs_subscribers() {
    let pair = Pair::new().await;
    let app = &pair.app;
    let one = app.owner("logs-one").await;
    let two = app.owner("logs-two").await;
    let flow_one = active_workflow(app, &one, "logs").await;
    let flow_two = active_workflow(app, &two, "logs").await;
    let run = start(pair.a, &one.token, &flow_one).await;
    let other = start(pair.a, &two.token, &flow_two).await;
    const LOGS: &str = "subscription($r: ID!) { logAppended(runId: $r) { runId count } }";
    let mut sub_one = Subscriber::open(pair.b, &one.token, LOGS, json!({ "r": run })).await;
    let mut sub_two = Subscriber::open(pair.b, &two.token, LOGS, json!({ "r": other })).await;

    // Announcements as the log store makes them, from the application role.
    let pool = app.db.app_pool(1).await;
    let announce = |tenant: &Member, run: &str, count: i64| {
        json!({
            "tenantId": tenant.tenant_uuid(),
            "runId": uuid_of(run),
            "count": count,
        })
        .to_string()
    };
    let notify = |payload: String| {
        let pool = pool.clone();
        async move {
            pool.execute(stmt(
                "SELECT pg_notify('trellis_logs', $1)",
                [payload.into()],
            ))
            .await
            .unwrap();
        }
    };
    // The subscription may not listen yet: announce until it hears.
    let mut heard = None;
    for _ in 0..20 {
        notify(announce(&one, &run, 3)).await;
        if let Some(message) = sub_one.next_within(Duration::from_millis(500)).await {
            heard = Some(message);
            break;
        }
    }
    let heard = heard.expect("the log subscription never delivered");
    assert_eq!(
        heard["payload"]["data"]["logAppended"],
        json!({ "runId": run, "count": 3 })
    );
    while sub_one
        .next_within(Duration::from_millis(300))
        .await
        .is_some()
    {}
    sub_two.assert_quiet().await;

    // A forged announcement pairing tenant two with tenant one's run, and one pairing
    // tenant one with tenant two's run: neither subscriber hears anything.
    notify(announce(&two, &run, 7)).await;
    notify(announce(&one, &other, 7)).await;
    sub_one.assert_quiet().await;
    sub_two.assert_quiet().await;
    notify(announce(&two, &other, 2)).await;
    assert_eq!(
        sub_two.data().await["logAppended"],
        json!({ "runId": other, "count": 2 })
    );
}

#[tokio::test]
async fn connection_init_without_valid_credentials_is_refused() {
    let pair = Pair::new().await;
    let user = pair.app.sign_up("refused@live.test").await;
    for payload in [
        json!({}),
        json!({ "Authorization": "Bearer forged" }),
        json!({ "Authorization": "Bearer trl_forged_key" }),
    ] {
        let (_, reply) = connect(pair.b, payload.clone()).await;
        assert!(reply.starts_with("close"), "{payload}: {reply}");
    }
    // A signed-in user without an active tenant connects, but cannot subscribe.
    let mut no_tenant = Subscriber::open(pair.b, &user.token, RUNS_UPDATED, json!({})).await;
    let message = no_tenant.next_within(ARRIVES).await.unwrap();
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{message:#}"
    );
}

#[tokio::test]
async fn queries_and_mutations_over_the_socket_run_like_http_requests() {
    let pair = Pair::new().await;
    let app = &pair.app;
    let one = app.owner("socket-one").await;
    let two = app.owner("socket-two").await;
    let flow_one = active_workflow(app, &one, "socket").await;
    let flow_two = active_workflow(app, &two, "socket").await;
    const COUNT: &str = "{ runs { totalCount } }";

    // A mutation over the socket answers once, completes, and its run is committed:
    // the other server reads it over HTTP.
    let mut socket = Subscriber::open(pair.b, &one.token, START, json!({ "w": flow_one })).await;
    let started = socket.data().await;
    assert_eq!(started["startRun"]["userErrors"], json!([]), "{started:#}");
    let run = started["startRun"]["run"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let end = socket.next_within(ARRIVES).await.unwrap();
    assert_eq!(end, json!({ "type": "complete", "id": "1" }));
    let seen = post(
        pair.a,
        &one.token,
        "query($r: [ID!]!) { nodes(ids: $r) { id } }",
        json!({ "r": [run] }),
    )
    .await;
    assert_eq!(seen["nodes"][0]["id"], run.as_str());

    // A query reads the subscriber's tenant only; another tenant's workflow is not
    // there, and a mutation on it changes nothing.
    socket
        .send(json!({ "id": "2", "type": "subscribe", "payload": {
            "query": "query($w: [ID!]!) { nodes(ids: $w) { id } runs { totalCount } }",
            "variables": { "w": [flow_one, flow_two] } } }))
        .await;
    let read = socket.data().await;
    assert_eq!(read["nodes"], json!([{ "id": flow_one }, null]), "{read:#}");
    assert_eq!(read["runs"]["totalCount"], 1);
    let end = socket.next_within(ARRIVES).await.unwrap();
    assert_eq!(end, json!({ "type": "complete", "id": "2" }));
    socket
        .send(json!({ "id": "3", "type": "subscribe", "payload": {
            "query": START, "variables": { "w": flow_two } } }))
        .await;
    let refused = socket.next_within(ARRIVES).await.unwrap();
    assert_eq!(refused["type"], "next", "{refused:#}");
    let code = refused["payload"]["data"]["startRun"]["userErrors"][0]["code"]
        .as_str()
        .or(refused["payload"]["errors"][0]["extensions"]["code"].as_str());
    assert_eq!(code, Some("NOT_FOUND"), "{refused:#}");
    let runs_two = post(pair.a, &two.token, COUNT, json!({})).await;
    assert_eq!(runs_two["runs"]["totalCount"], 0);
    let runs_one = post(pair.a, &one.token, COUNT, json!({})).await;
    assert_eq!(runs_one["runs"]["totalCount"], 1);
}

#[tokio::test]
async fn the_socket_closes_once_its_access_token_expires() {
    let pair = Pair::new().await;
    let app = &pair.app;
    let owner = app.owner("expiring").await;
    let flow = active_workflow(app, &owner, "expiring").await;
    // The same user and tenant as the owner's token, with a 2-second lifetime.
    let keys = app::jwt_keys(&test_config(&app.db.app_url, &[])).unwrap();
    let claims = keys.verify(&owner.token).unwrap();
    let short_lived = test_config(&app.db.app_url, &["--access-token-ttl", "2"]);
    let (token, short) = app::jwt_keys(&short_lived)
        .unwrap()
        .issue(claims.sub, claims.tid, claims.sid)
        .unwrap();
    // Server B accepts it until expiry plus its leeway, and not a moment longer.
    let accepted_until = std::time::UNIX_EPOCH
        + Duration::from_secs((short.exp as u64) + keys.config().leeway_seconds);

    let mut subscriber = Subscriber::open(pair.b, &token, RUNS_UPDATED, json!({})).await;
    start(pair.a, &owner.token, &flow).await;
    let event = subscriber.data().await;
    assert_eq!(event["runsUpdated"]["workflow"]["id"], flow.as_str());

    let closed = subscriber
        .next_within(ARRIVES + Duration::from_secs(5))
        .await
        .expect("the socket closes");
    assert!(
        std::time::SystemTime::now() >= accepted_until,
        "closed before the token expired"
    );
    assert_eq!(closed["type"], "close", "{closed:#}");
    let frame = closed["frame"].as_str().unwrap();
    assert!(
        frame.contains("4403") && frame.contains("credentials expired"),
        "{frame}"
    );
}

#[tokio::test]
async fn a_revoked_api_key_gets_no_more_events() {
    let pair = Pair::new().await;
    let app = &pair.app;
    let owner = app.owner("revoking").await;
    let flow = active_workflow(app, &owner, "revoking").await;
    let created = post(
        pair.a,
        &owner.token,
        "mutation { createApiKey(input: {name: \"watcher\", scopes: [READ]}) { apiKey { id } secret } }",
        json!({}),
    )
    .await;
    let key_id = created["createApiKey"]["apiKey"]["id"].as_str().unwrap();
    let secret = created["createApiKey"]["secret"].as_str().unwrap();

    let mut subscriber = Subscriber::open(pair.b, secret, RUNS_UPDATED, json!({})).await;
    start(pair.a, &owner.token, &flow).await;
    let event = subscriber.data().await;
    assert_eq!(event["runsUpdated"]["workflow"]["id"], flow.as_str());

    let revoked = post(
        pair.a,
        &owner.token,
        "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { userErrors { code } } }",
        json!({ "id": key_id }),
    )
    .await;
    assert_eq!(revoked["revokeApiKey"]["userErrors"], json!([]));
    // The socket stays open, but each event is read again as the key, which is no
    // longer live: the run's change never reaches it.
    start(pair.a, &owner.token, &flow).await;
    if let Some(message) = subscriber.next_within(QUIET).await {
        assert!(message["payload"]["data"].is_null(), "{message:#}");
        assert_eq!(
            message["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{message:#}"
        );
    }
}

//! The dashboard in a real browser: Debian's headless Chromium, driven over WebDriver by
//! `fantoccini` through Debian's `chromedriver`, against the axum example's setup (the router
//! at `/scheduler`, mutations behind a bearer token) served in-process on a loopback port.
//!
//! Without `/usr/bin/chromedriver` the test says it skipped, unless `APSCHED_TEST_STRICT=1`
//! (CI), where it fails. Every wait is a WebDriver wait bounded by a timeout.
#![cfg(feature = "dashboard")]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use apsched::trigger::Interval;
use apsched::{web, Scheduler};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::BodyExt;
use serde_json::Value;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const TOKEN: &str = "change-me";
/// The longest any one step may take.
const WAIT: Duration = Duration::from_secs(20);

/// The example's guard: `Authorization: Bearer <token>` or `401` with a JSON error.
async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {token}");
    match request.headers().get(header::AUTHORIZATION) {
        Some(given) if given.as_bytes() == expected.as_bytes() => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({
                "error": "a valid bearer token is required", "kind": "unauthorized"
            })),
        )
            .into_response(),
    }
}

async fn cleanup() {}

/// The example's app: a scheduler with its jobs, the API at `/scheduler`, guarded.
async fn serve() -> (Scheduler, SocketAddr) {
    let scheduler = Scheduler::new();
    scheduler.start().await.unwrap();
    scheduler
        .add_job(cleanup, Interval::minutes(1))
        .id("cleanup")
        .await
        .unwrap();
    for i in 0..120 {
        scheduler
            .add_job(cleanup, Interval::hours(1))
            .id(format!("bulk-{i:03}"))
            .name(format!("bulk job {i}"))
            .await
            .unwrap();
    }
    let token: Arc<str> = Arc::from(TOKEN);
    let api = web::Api::new(scheduler.clone())
        .guard_mutations(middleware::from_fn_with_state(token, require_token))
        .into_router();
    let app = Router::new().nest("/scheduler", api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (scheduler, addr)
}

/// chromedriver on a free loopback port; killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    Driver { child, port }
}

/// A WebDriver session of headless Chromium, retried until chromedriver listens (bounded).
async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let capabilities: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    }))
    .unwrap();
    let url = format!("http://127.0.0.1:{}", driver.port);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return client,
            Err(error) if tokio::time::Instant::now() < deadline => {
                // chromedriver is still starting: its port refuses until it listens.
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no WebDriver session from chromedriver at {url}: {error}"),
        }
    }
}

/// `GET path` on the server, as any REST client would: the status and the JSON body.
async fn rest(addr: SocketAddr, path: &str) -> (StatusCode, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<axum::body::Body>();
    let uri = format!("http://{addr}{path}");
    let response = client.get(uri.parse().unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Where the screenshot goes: `$CARGO_TARGET_DIR/dashboard.png`, else `target/`.
fn screenshot_path() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("dashboard.png")
}

async fn wait_for(client: &Client, xpath: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(xpath))
        .await
        .unwrap_or_else(|error| panic!("no {xpath} within {WAIT:?}: {error}"))
}

/// Clicks what `xpath` finds; found again if the page re-rendered it in between (its live
/// updates replace the job rows), within the same bound.
async fn click(client: &Client, xpath: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match wait_for(client, xpath).await.click().await {
            Ok(()) => return,
            Err(error)
                if error.is_stale_element_reference() && tokio::time::Instant::now() < deadline => {
            }
            Err(error) => panic!("cannot click {xpath}: {error}"),
        }
    }
}

async fn set_token(client: &Client, token: &str) {
    let field = wait_for(client, "//input[@id='token']").await;
    field.clear().await.unwrap();
    field.send_keys(token).await.unwrap();
}

const CLEANUP_ROW: &str = "//tr[@data-job-id='cleanup']";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_pauses_runs_and_refuses_a_wrong_token() {
    if !std::path::Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var("APSCHED_TEST_STRICT").as_deref() != Ok("1"),
            "{CHROMEDRIVER} is missing (install Debian's chromium and chromium-driver); \
             APSCHED_TEST_STRICT=1 does not skip"
        );
        eprintln!("skipped: {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)");
        return;
    }
    let (scheduler, addr) = serve().await;
    let driver = start_driver();
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    let outcome = scenario(&client, addr).await;
    // Saved whatever happened, so a failure can be looked at.
    if let Ok(png) = client.screenshot().await {
        std::fs::write(screenshot_path(), png).unwrap();
    }
    client.close().await.unwrap();
    scheduler.shutdown().await.unwrap();
    outcome.unwrap();
}

async fn scenario(client: &Client, addr: SocketAddr) -> Result<(), String> {
    client
        .goto(&format!("http://{addr}/scheduler/ui"))
        .await
        .map_err(|e| e.to_string())?;

    // The jobs are listed (one page of the 121), with their trigger in words, the total shown.
    wait_for(
        client,
        &format!("{CLEANUP_ROW}/td[@class='trigger' and text()='every 1 minute']"),
    )
    .await;
    wait_for(client, "//span[@id='range' and text()='1–50 of 121']").await;
    wait_for(client, "//span[@id='state' and text()='running']").await;
    wait_for(client, "//span[@id='live' and text()='on']").await;

    // The server-side filter narrows the list.
    let filter = wait_for(client, "//input[@id='filter']").await;
    filter.send_keys("clean").await.unwrap();
    wait_for(client, "//span[@id='range' and text()='1–1 of 1']").await;

    // A wrong token is refused, visibly, and changes nothing.
    set_token(client, "wrong").await;
    click(
        client,
        &format!("{CLEANUP_ROW}//button[@data-action='pause']"),
    )
    .await;
    wait_for(
        client,
        "//div[@id='message' and @class='error' and contains(text(), '401')]",
    )
    .await;
    let (_, job) = rest(addr, "/scheduler/jobs/cleanup").await;
    if job["paused"] != false {
        return Err(format!("a refused pause paused the job: {job}"));
    }

    // With the token, the pause goes through: shown paused, and paused by the REST API.
    set_token(client, TOKEN).await;
    click(
        client,
        &format!("{CLEANUP_ROW}//button[@data-action='pause']"),
    )
    .await;
    wait_for(
        client,
        &format!("{CLEANUP_ROW}/td[@class='paused' and text()='yes']"),
    )
    .await;
    let (status, job) = rest(addr, "/scheduler/jobs/cleanup").await;
    if (status, &job["paused"]) != (StatusCode::OK, &Value::Bool(true)) {
        return Err(format!(
            "the REST API does not show the job paused: {status} {job}"
        ));
    }

    // Selected, the job has no runs yet; run now, and the run appears live.
    click(client, &format!("{CLEANUP_ROW}/td[@class='id']")).await;
    wait_for(client, "//span[@id='detail-id' and text()='cleanup']").await;
    wait_for(client, "//table[@id='runs']//td[text()='no runs yet']").await;
    click(
        client,
        &format!("{CLEANUP_ROW}//button[@data-action='run']"),
    )
    .await;
    wait_for(client, "//table[@id='runs']//tr[@class='run']/td[contains(@class, 'outcome') and text()='succeeded']").await;
    wait_for(
        client,
        "//ul[@id='events']/li[contains(text(), 'job_executed cleanup')]",
    )
    .await;
    let (_, runs) = rest(addr, "/scheduler/jobs/cleanup/runs").await;
    if runs.as_array().map(Vec::len) != Some(1) {
        return Err(format!("the REST API does not show the run: {runs}"));
    }
    Ok(())
}

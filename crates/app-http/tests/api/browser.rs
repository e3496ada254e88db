//! The live page in real headless Chromium, driven over WebDriver by Debian's `chromedriver`:
//! the page loads, a score is posted over HTTP, and the page's DOM shows it within 2 s.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian packages `chromium` and
//! `chromium-driver`). Without them the test prints a SKIP line, unless
//! `KEEL_REQUIRE_BROWSER=1` (set by `.ci/run` once it has them), where it fails. A screenshot
//! of the page is written to `KEEL_SCREENSHOT_TO` when set (how `docs/scoreboard.png` is made).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::accounts::{mint_user, spawn_with_admin};
use crate::scoreboard::{start, update};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The bound: a posted score is on the page within this.
const SHOWN_WITHIN: Duration = Duration::from_secs(2);

/// Chromium's switches for a headless run on a closed network (no background traffic).
const SWITCHES: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=800,600",
];

fn browser_available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var("KEEL_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "KEEL_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing"
        );
        println!("SKIP: browser test: install Debian's chromium and chromium-driver to run it");
    }
    present
}

/// A `chromedriver` on a free loopback port, killed when dropped.
struct Driver {
    process: Child,
    url: String,
    client: reqwest::Client,
}

impl Driver {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let started = Instant::now();
        loop {
            let status = driver
                .client
                .get(format!("{}/status", driver.url))
                .send()
                .await;
            if let Ok(status) = status
                && let Ok(body) = status.json::<Value>().await
                && body["value"]["ready"] == true
            {
                return driver;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver never got ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("chromedriver answers");
        let status = response.status();
        let body: Value = response.json().await.expect("a WebDriver JSON answer");
        assert!(status.is_success(), "WebDriver {path}: {status} {body}");
        body["value"].clone()
    }

    /// A new browser session; returns its id.
    async fn session(&self, profile: &Path) -> String {
        let mut args: Vec<String> = SWITCHES.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let value = self
            .call(reqwest::Method::POST, "/session", Some(capabilities))
            .await;
        value["sessionId"].as_str().unwrap().to_owned()
    }

    /// Runs `script` in the page; its return value.
    async fn run(&self, session: &str, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            &format!("/session/{session}/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Polls `script` until it returns true; how long that took.
    async fn wait_for(&self, session: &str, script: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if self.run(session, script).await == true {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "`{script}` not true within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_a_posted_score_within_two_seconds() {
    if !browser_available() {
        return;
    }
    let (app, stores) = spawn_with_admin(&[("KEEL_WORKERS", "0")]).await;
    let driver = Driver::start().await;
    let profile = std::env::temp_dir().join(format!("keel-chromium-{}", uuid::Uuid::new_v4()));
    let session = driver.session(&profile).await;
    driver
        .call(
            reqwest::Method::POST,
            &format!("/session/{session}/url"),
            Some(json!({"url": app.url("/")})),
        )
        .await;
    // Live: the stream is open and its first snapshot is shown.
    driver
        .wait_for(
            &session,
            "return document.getElementById('status').dataset.state === 'live' \
             && document.body.dataset.lastEventId !== undefined;",
            Duration::from_secs(15),
        )
        .await;

    let (user, token) = mint_user(&stores, "participant").await;
    let (action, action_token) = start(&app, &token).await;
    let posted = Instant::now();
    assert_eq!(
        update(&app, &token, &action, &action_token).await.status(),
        200
    );
    let shown = format!(
        "const row = document.querySelector('#board tr[data-user-id=\"{}\"]'); \
         return row !== null && row.textContent.includes('Minted') \
         && row.querySelector('.score').textContent === '10';",
        user.as_uuid()
    );
    driver.wait_for(&session, &shown, SHOWN_WITHIN).await;
    let elapsed = posted.elapsed();
    println!("the page showed the score {elapsed:?} after it was posted");
    assert!(elapsed < SHOWN_WITHIN, "{elapsed:?}");

    if let Ok(path) = std::env::var("KEEL_SCREENSHOT_TO") {
        let png = driver
            .call(
                reqwest::Method::GET,
                &format!("/session/{session}/screenshot"),
                None,
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(&path, png).unwrap();
    }
    driver
        .call(
            reqwest::Method::DELETE,
            &format!("/session/{session}"),
            None,
        )
        .await;
    let _ = std::fs::remove_dir_all(profile);
}

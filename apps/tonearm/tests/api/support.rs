use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Once},
};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::{sync::oneshot, task::JoinHandle};
use tonearm::{App, ServiceName, Settings};

pub use testkit::{OwnRedis, fresh_postgres_url, redis_url, unique_email};

fn init_logs() {
    static LOGS: Once = Once::new();
    LOGS.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = kernel::telemetry::init(&Default::default(), "tonearm-test");
        }
    });
}

/// The secret the tests' gateways and services share.
pub const INTERNAL_SECRET: &str = "tonearm-test-internal-secret";

/// Settings for a test: a private data dir and a random port.
pub fn test_settings(data_dir: &Path) -> Settings {
    let mut settings = Settings { data_dir: data_dir.to_owned(), ..Settings::default() };
    settings.server.port = 0;
    settings.server.shutdown_grace_secs = 5;
    // Services deployed alone (`serve`) believe only identity proven with it.
    settings.internal.identity_secret = Some(INTERNAL_SECRET.to_owned().into());
    // Loading the models takes seconds and hundreds of MB: only the voice tests do it.
    settings.ai.models_dir = Some(data_dir.join("no-models"));
    settings
}

/// Settings whose caches live in the shared Redis. Several tests share its anonymous
/// budget (all come from 127.0.0.1), so that budget is lifted unless a test sets it.
pub fn redis_settings(data_dir: &Path) -> Settings {
    let mut settings = test_settings(data_dir);
    settings.auth.cache_url = Some(kernel::engine::EngineUrl::new(redis_url()));
    settings.gateway.cache_url = Some(kernel::engine::EngineUrl::new(redis_url()));
    settings.gateway.rate_limits.anonymous_per_minute = 1_000_000;
    settings
}

/// Settings on a Redis of the test's own, for a test that spends many of the budgets and
/// login throttles Redis holds: windows are per client address, and every test's client
/// is 127.0.0.1, so in the shared Redis it would spend other tests' budgets too.
pub async fn own_redis_settings(data_dir: &Path) -> (Settings, OwnRedis) {
    let redis = OwnRedis::start().await;
    let mut settings = test_settings(data_dir);
    settings.auth.cache_url = Some(kernel::engine::EngineUrl::new(redis.url()));
    settings.gateway.cache_url = Some(kernel::engine::EngineUrl::new(redis.url()));
    (settings, redis)
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    _dir: Option<Arc<TempDir>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// `tonearm up` on a fresh data dir.
    pub async fn up() -> Self {
        let dir = Arc::new(TempDir::new().unwrap());
        let settings = test_settings(dir.path());
        Self::start(settings, None, Some(dir)).await
    }

    pub async fn up_with(settings: Settings, dir: Option<Arc<TempDir>>) -> Self {
        Self::start(settings, None, dir).await
    }

    pub async fn serve(settings: Settings, service: ServiceName) -> Self {
        Self::start(settings, Some(service), None).await
    }

    async fn start(
        settings: Settings,
        service: Option<ServiceName>,
        dir: Option<Arc<TempDir>>,
    ) -> Self {
        init_logs();
        // Boxed: starting every service is a large future, and each test awaits one.
        let app = match service {
            None => Box::pin(App::up(&settings)).await,
            Some(service) => Box::pin(App::serve(&settings, service)).await,
        }
        .expect("the app starts");
        let addr = app.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            client: reqwest::Client::new(),
            data_dir: settings.data_dir.clone(),
            _dir: dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A client of a server running elsewhere (an [`UpProcess`]), at `url`.
    pub fn attach(url: &str, data_dir: &Path) -> Self {
        let addr = url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
        Self {
            addr,
            client: reqwest::Client::new(),
            data_dir: data_dir.to_owned(),
            _dir: None,
            stop: None,
            task: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a request as a player would: optional bearer token, optional JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.send(reqwest::Method::POST, path, token, Some(body)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    /// Registers a new listener; returns the register response body.
    pub async fn register(&self, email: &str) -> Value {
        let response = self
            .post(
                "/v1/auth/register",
                None,
                json!({"email": email, "password": "correct horse battery", "display_name": "Listener"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    pub async fn login(&self, email: &str) -> Value {
        let response = self
            .post(
                "/v1/auth/login",
                None,
                json!({"email": email, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Stops the app the way SIGTERM would, and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Waits until a track is no longer processing (ready or failed); returns it as its
/// uploader (`token`) reads it.
pub async fn settled(app: &TestApp, token: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        let response = app.get(&format!("/v1/tracks/{id}"), Some(token)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let track: Value = response.json().await.unwrap();
        if track["status"] != "processing" {
            return track;
        }
        assert!(std::time::Instant::now() < deadline, "still processing after 2 minutes: {track}");
        tokio::time::sleep(pause).await;
        pause =
            (pause + std::time::Duration::from_millis(50)).min(std::time::Duration::from_secs(1));
    }
}

pub fn token(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_else(|| panic!("no {field} in {body}")).to_owned()
}

/// Asserts the response is problem+json with `status`; returns its body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// Runs the `tonearm` binary on a data dir, as an operator would.
pub fn tonearm_cli(args: &[&str], data_dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tonearm"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Asserts a command succeeded; returns its standard output.
pub fn succeeded(output: &std::process::Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `tonearm up` as its own process, to be signalled or killed outright.
pub struct UpProcess {
    child: Option<Child>,
    pub url: String,
}

impl UpProcess {
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[("RUST_LOG", "warn")]).await
    }

    /// Starts it with extra environment; waits for the line that says where it listens,
    /// then keeps draining its output so that logging never blocks it.
    pub async fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tonearm"))
            .args(["up", "--port", "0", "--data-dir"])
            .arg(data_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let banner = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let banner = lines
                .by_ref()
                .map_while(Result::ok)
                .find(|line| line.starts_with("Tonearm is up on"))
                .expect("tonearm up prints where it listens");
            std::thread::spawn(move || lines.for_each(drop));
            banner
        })
        .await
        .unwrap();
        let url = banner
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {banner:?}"))
            .to_owned();
        Self { child: Some(child), url }
    }

    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends SIGTERM, as an orchestrator stopping the process would.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    }

    pub async fn wait(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap()
    }
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where the fetched models are (`TONEARM_TEST_MODELS_DIR`, else the default directory),
/// checked to hold `artifact`: the tests that need a model fail, never skip, without it.
pub fn models_dir(artifact: &ai::models::Artifact) -> PathBuf {
    let dir = std::env::var_os("TONEARM_TEST_MODELS_DIR")
        .map_or_else(ai::models::default_dir, PathBuf::from);
    assert!(
        ai::models::is_fetched(&dir, artifact),
        "no {} in {}: run `tonearm models fetch`",
        artifact.dir,
        dir.display()
    );
    dir
}

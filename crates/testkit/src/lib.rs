//! Test support every crate's tests share: where the real engines are, fresh PostgreSQL
//! databases, Redis servers and Kafka brokers a test may stop, and names no other test
//! uses. Tests talk to
//! real engines; `scripts/test` makes sure they run.

mod link;
pub mod otlp;
pub mod voice;

pub use link::Link;

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The test PostgreSQL server (`TONEARM_TEST_POSTGRES_URL`), without a database name.
pub fn postgres_url() -> String {
    std::env::var("TONEARM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// The shared test Redis (`TONEARM_TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("TONEARM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The shared test Kafka broker (`TONEARM_TEST_KAFKA_URL`).
pub fn kafka_url() -> String {
    std::env::var("TONEARM_TEST_KAFKA_URL").unwrap_or_else(|_| "kafka://127.0.0.1:9092".to_owned())
}

/// The test ClickHouse server (`TONEARM_TEST_CLICKHOUSE_URL`), without a database name.
pub fn clickhouse_url() -> String {
    std::env::var("TONEARM_TEST_CLICKHOUSE_URL")
        .unwrap_or_else(|_| "clickhouse://127.0.0.1:8123".to_owned())
        .trim_end_matches('/')
        .to_owned()
}

/// A database name no other test uses; `scripts/test` drops leftovers by this prefix.
pub fn fresh_database_name() -> String {
    format!("tonearm_test_{}", Uuid::now_v7().simple())
}

/// The URL of `database` on the test server.
pub fn postgres_database_url(database: &str) -> String {
    format!("{}/{database}", postgres_url())
}

/// The URL of a database no other test uses (created by whoever connects first).
pub fn fresh_postgres_url() -> String {
    postgres_database_url(&fresh_database_name())
}

/// A name no other test uses, for keys, emails and topics.
pub fn unique(label: &str) -> String {
    format!("{label}-{}", Uuid::now_v7().simple())
}

pub fn unique_email() -> String {
    format!("{}@example.com", unique("listener"))
}

/// A connection to the test server's `postgres` maintenance database.
pub async fn maintenance_connection() -> PgConnection {
    let url = postgres_database_url("postgres");
    PgConnection::connect(&url)
        .await
        .unwrap_or_else(|error| panic!("cannot reach PostgreSQL at {url}: {error}"))
}

pub async fn database_exists(database: &str) -> bool {
    let mut connection = maintenance_connection().await;
    let exists = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(database)
        .fetch_one(&mut connection)
        .await
        .unwrap_or_else(|error| panic!("cannot query pg_database: {error}"));
    let _ = connection.close().await;
    exists
}

/// Drops a database a test created, with whatever connections remain to it.
pub async fn drop_database(database: &str) {
    let mut connection = maintenance_connection().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"))
        .execute(&mut connection)
        .await
        .unwrap_or_else(|error| panic!("cannot drop {database}: {error}"));
    let _ = connection.close().await;
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|error| panic!("no free port: {error}"))
}

/// Starts a server and waits until it accepts connections on `port`.
async fn start_listening(mut command: Command, port: u16, what: &str) -> Child {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {what} (see scripts/test): {error}"));
    for _ in 0..200 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited on port {port}: {status}");
        }
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    panic!("{what} did not start on port {port}");
}

/// A Redis server of the test's own, on a random port, so stopping it disturbs no other
/// test. Stopped when dropped.
pub struct OwnRedis {
    pub port: u16,
    child: Child,
}

impl OwnRedis {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Self {
        let mut command = Command::new("redis-server");
        command.args(["--port", &port.to_string(), "--bind", "127.0.0.1"]).args([
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        Self { port, child: start_listening(command, port, "redis-server").await }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(self) {}
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real SMTP server of the test's own (aiosmtpd; `scripts/test` installs it), writing
/// each message it accepts to a file in `dir`. Stopped when dropped; started again on the
/// same port and `dir`, it keeps what it had received.
pub struct OwnSmtpRelay {
    pub port: u16,
    pub dir: std::path::PathBuf,
    child: Child,
}

impl OwnSmtpRelay {
    pub async fn start_on(port: u16, dir: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp/relay.py");
        let python = std::env::var("TONEARM_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut command = Command::new(python);
        command.arg(script).arg("--port").arg(port.to_string()).arg("--dir").arg(dir);
        let child = start_listening(command, port, "the SMTP relay (aiosmtpd)").await;
        Self { port, dir: dir.to_owned(), child }
    }

    /// Every message accepted so far, as received.
    pub fn messages(&self) -> Vec<String> {
        received_mail(&self.dir)
    }

    /// Makes the relay answer 451 to every message (`true`) or accept again (`false`).
    pub fn refuse(&self, refuse: bool) {
        let flag = self.dir.join("refuse");
        if refuse {
            std::fs::write(flag, b"").expect("the refuse flag is written");
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    pub fn stop(self) {}
}

/// The messages a relay (or the embedded mail directory) holds: every `.eml` file in `dir`.
pub fn received_mail(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .collect()
}

impl Drop for OwnSmtpRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A ClickHouse server of the test's own, on the given ports (HTTP, native, interserver),
/// keeping its data under `dir`: stopped (dropped) and started again with the same `dir`
/// and ports, it comes back with its tables, as a restarted production server would.
/// Its config is a copy of the packaged one (`scripts/test` installs it), overridden to
/// listen on loopback only.
pub struct OwnClickHouse {
    pub http_port: u16,
    child: Child,
}

impl OwnClickHouse {
    /// Three free ports for [`OwnClickHouse::start_in`].
    pub fn free_ports() -> [u16; 3] {
        [free_port(), free_port(), free_port()]
    }

    pub async fn start_in(dir: &Path, [http, native, interserver]: [u16; 3]) -> Self {
        for sub in ["config.d", "data", "tmp", "user_files", "log"] {
            std::fs::create_dir_all(dir.join(sub))
                .unwrap_or_else(|error| panic!("cannot make ClickHouse's {sub} dir: {error}"));
        }
        for file in ["config.xml", "users.xml"] {
            std::fs::copy(Path::new("/etc/clickhouse-server").join(file), dir.join(file))
                .unwrap_or_else(|error| {
                    panic!("no packaged ClickHouse {file} (see scripts/test): {error}")
                });
        }
        let home = dir.display();
        let overrides = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{home}/log/server.log</log><errorlog>{home}/log/error.log</errorlog></logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http}</http_port>
    <tcp_port>{native}</tcp_port>
    <interserver_http_port>{interserver}</interserver_http_port>
    <path>{home}/data/</path>
    <tmp_path>{home}/tmp/</tmp_path>
    <user_files_path>{home}/user_files/</user_files_path>
    <format_schema_path>{home}/data/format_schemas/</format_schema_path>
</yandex>
"#
        );
        std::fs::write(dir.join("config.d").join("ports.xml"), overrides)
            .unwrap_or_else(|error| panic!("cannot write ClickHouse's config: {error}"));
        let mut command = Command::new("clickhouse-server");
        command.arg(format!("--config-file={}", dir.join("config.xml").display())).current_dir(dir);
        Self { http_port: http, child: start_listening(command, http, "clickhouse-server").await }
    }

    pub fn url(&self) -> String {
        format!("clickhouse://127.0.0.1:{}", self.http_port)
    }

    pub fn stop(self) {}
}

impl Drop for OwnClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Kafka broker of the test's own (tansu, keeping everything in memory), on a random
/// port, so stopping it disturbs no other test. Restarted with [`OwnKafka::start_on`] on
/// the same port, it comes back empty: no topics, no groups. Stopped when dropped.
///
/// The binary is `TONEARM_TANSU`, else `tansu` on the `PATH` (`scripts/test` sets both).
pub struct OwnKafka {
    /// Where the broker listens.
    pub port: u16,
    /// Where it tells clients to reach it: its own port, or a [`Link`]'s in front of it.
    advertised: u16,
    child: Child,
}

impl OwnKafka {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Self {
        Self::start_advertising(port, port).await
    }

    /// A broker on `port` that sends its clients to `advertised`: a broker behind a
    /// [`Link`], which the test can cut without the broker losing anything.
    pub async fn start_advertising(port: u16, advertised: u16) -> Self {
        let binary = std::env::var("TONEARM_TANSU").unwrap_or_else(|_| "tansu".to_owned());
        let listener = format!("tcp://127.0.0.1:{port}");
        let advertised_listener = format!("tcp://127.0.0.1:{advertised}");
        let mut command = Command::new(&binary);
        command
            .arg("broker")
            .args(["--listener-url", &listener, "--advertised-listener-url", &advertised_listener])
            .args(["--storage-engine", "memory://tansu/"])
            // tansu reads a `.env` from its working directory: keep the tree's out of it.
            .current_dir(std::env::temp_dir());
        Self { port, advertised, child: start_listening(command, port, &binary).await }
    }

    /// The URL clients use: the advertised address.
    pub fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.advertised)
    }

    pub fn stop(self) {}
}

impl Drop for OwnKafka {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL server of the test's own, on the given port, keeping its cluster under
/// `dir`: stopped (dropped) and started again with the same `dir` and port, it comes back
/// with its databases. The binaries are the machine's (`pg_config --bindir`, else Debian's
/// `/usr/lib/postgresql/<version>/bin`); as root, the server runs as the `postgres` user,
/// since PostgreSQL refuses to run as root.
pub struct OwnPostgres {
    pub port: u16,
    child: Child,
}

impl OwnPostgres {
    pub async fn start_in(dir: &Path, port: u16) -> Self {
        let bin = postgres_bindir();
        let cluster = dir.join("cluster");
        if !cluster.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&cluster)
                .unwrap_or_else(|error| panic!("cannot make PostgreSQL's dir: {error}"));
            as_postgres_owner(dir);
            let mut initdb = as_postgres(&bin.join("initdb"));
            initdb.arg("-D").arg(&cluster).args(["-A", "trust", "-U", "postgres", "--no-sync"]);
            let output =
                initdb.output().unwrap_or_else(|error| panic!("cannot run initdb: {error}"));
            assert!(output.status.success(), "initdb: {}", String::from_utf8_lossy(&output.stderr));
        }
        let mut server = as_postgres(&bin.join("postgres"));
        server
            .arg("-D")
            .arg(&cluster)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()));
        Self { port, child: start_listening(server, port, "postgres").await }
    }

    /// The server's URL, without a database name.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    pub fn stop(self) {}
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // SIGKILL, as a crash or a lost host would: what was committed must be there.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn postgres_bindir() -> std::path::PathBuf {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output() {
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if output.status.success() && Path::new(&dir).join("initdb").exists() {
            return dir.into();
        }
    }
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|version| version.join("bin"))
        .unwrap_or_else(|| panic!("no PostgreSQL binaries (pg_config, /usr/lib/postgresql)"))
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// `program`, run as the `postgres` user when this process is root. `setpriv` execs the
/// program in its own place, so the child killed is the server itself.
fn as_postgres(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("setpriv");
        command.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Hands `dir` (and what is under it) to the `postgres` user when this process is root.
fn as_postgres_owner(dir: &Path) {
    if running_as_root() {
        let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir).status();
        assert!(status.is_ok_and(|status| status.success()), "cannot chown {}", dir.display());
    }
}

/// An S3 server of the test's own (s3s-fs, which `scripts/test` installs), on the given
/// port, keeping its objects under `dir`: stopped (dropped) and started again with the
/// same `dir` and port, it serves what it held. The binary is `TONEARM_S3S_FS`, else
/// `s3s-fs` in `~/.cache/tonearm/tools/bin` or on the `PATH`.
pub struct OwnS3 {
    pub port: u16,
    pub bucket: String,
    child: Child,
}

impl OwnS3 {
    pub const ACCESS_KEY: &str = "tonearm";
    pub const SECRET_KEY: &str = "tonearm-secret";

    pub async fn start_in(dir: &Path, port: u16) -> Self {
        let bucket = "tonearm-own".to_owned();
        std::fs::create_dir_all(dir.join(&bucket))
            .unwrap_or_else(|error| panic!("cannot make the bucket's dir: {error}"));
        let binary = std::env::var("TONEARM_S3S_FS").unwrap_or_else(|_| {
            let cached = std::env::var("HOME")
                .map(|home| Path::new(&home).join(".cache/tonearm/tools/bin/s3s-fs"))
                .ok()
                .filter(|path| path.exists());
            cached.map_or_else(|| "s3s-fs".to_owned(), |path| path.display().to_string())
        });
        let mut command = Command::new(&binary);
        command
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", Self::ACCESS_KEY, "--secret-key", Self::SECRET_KEY])
            .arg(dir);
        Self { port, bucket, child: start_listening(command, port, &binary).await }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(self) {}
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test S3-compatible server (`scripts/test` starts s3s-fs): endpoint, bucket, access
/// key and secret, from `TONEARM_TEST_S3_*`.
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

pub fn s3_server() -> S3Server {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    S3Server {
        endpoint: var("TONEARM_TEST_S3_ENDPOINT", "http://127.0.0.1:9900"),
        bucket: var("TONEARM_TEST_S3_BUCKET", "tonearm-test"),
        access_key_id: var("TONEARM_TEST_S3_ACCESS_KEY", "tonearm"),
        secret_access_key: var("TONEARM_TEST_S3_SECRET_KEY", "tonearm-secret"),
    }
}

/// A database of one test's own, for a store contract case: a SQLite file in a temporary
/// directory, or a new PostgreSQL database. [`TestDatabase::finish`] removes it; a failed
/// test skips that and leaves it behind for a look.
pub struct TestDatabase {
    pool: kernel::db::SqlPool,
    postgres_database: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        Self::open(&url, None, Some(dir)).await
    }

    pub async fn postgres() -> Self {
        let database = fresh_database_name();
        let url = postgres_database_url(&database);
        Self::open(&url, Some(database), None).await
    }

    async fn open(
        url: &str,
        postgres_database: Option<String>,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let engine_url = kernel::engine::EngineUrl::new(url);
        let pool = kernel::db::SqlPool::connect(&engine_url, "unused")
            .await
            .unwrap_or_else(|error| panic!("cannot open {url}: {error}"));
        Self { pool, postgres_database, _dir: dir }
    }

    pub fn pool(&self) -> &kernel::db::SqlPool {
        &self.pool
    }

    /// Closes the pool and drops the PostgreSQL database.
    pub async fn finish(self) {
        match self.pool {
            kernel::db::SqlPool::Sqlite(pool) => pool.close().await,
            kernel::db::SqlPool::Postgres(pool) => pool.close().await,
        }
        if let Some(database) = self.postgres_database {
            drop_database(&database).await;
        }
    }
}

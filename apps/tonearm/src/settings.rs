//! The whole configuration: one section per service plus what the process itself needs.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use ai::AiConfig;
use analytics::AnalyticsConfig;
use auth::AuthConfig;
use bus::BusConfig;
use catalog::CatalogConfig;
use gateway::GatewayConfig;
use kernel::{
    engine::EngineUrl, http::ServerLimits, internal::InternalConfig, telemetry::TelemetryConfig,
};
use objects::StorageConfig;
use people::PeopleConfig;
use playlist::PlaylistConfig;
use serde::Deserialize;
use streaming::StreamingConfig;

/// The documented default configuration file, printed by `tonearm config default`.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub internal: InternalConfig,
    pub events: BusConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub catalog: CatalogConfig,
    pub streaming: StreamingConfig,
    pub playlist: PlaylistConfig,
    pub analytics: AnalyticsConfig,
    pub ai: AiConfig,
    pub people: PeopleConfig,
    pub gateway: GatewayConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./tonearm-data"),
            server: ServerConfig::default(),
            telemetry: TelemetryConfig::default(),
            internal: InternalConfig::default(),
            events: BusConfig::default(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            catalog: CatalogConfig::default(),
            streaming: StreamingConfig::default(),
            playlist: PlaylistConfig::default(),
            analytics: AnalyticsConfig::default(),
            ai: AiConfig::default(),
            people: PeopleConfig::default(),
            gateway: GatewayConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub shutdown_grace_secs: u64,
    /// Connections held at once (capped by the open-file limit); more wait to be accepted.
    pub max_connections: usize,
    /// How long a new connection may stay silent before it is disconnected.
    pub header_timeout_secs: u64,
    /// How long a request head may take on a connection already talking (an idle
    /// kept-alive connection included) before it is disconnected.
    pub keep_alive_secs: u64,
    /// The largest request head accepted; a larger one gets 431.
    pub max_header_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let limits = ServerLimits::default();
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8080,
            shutdown_grace_secs: limits.grace.as_secs(),
            max_connections: limits.max_connections,
            header_timeout_secs: limits.header_timeout.as_secs(),
            keep_alive_secs: limits.keep_alive.as_secs(),
            max_header_bytes: limits.max_header_bytes,
        }
    }
}

impl ServerConfig {
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        let ip: std::net::IpAddr = self
            .host
            .parse()
            .map_err(|_| anyhow::anyhow!("server.host `{}` is not an IP address", self.host))?;
        Ok(SocketAddr::new(ip, self.port))
    }

    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            grace: self.grace(),
            max_connections: self.max_connections,
            header_timeout: Duration::from_secs(self.header_timeout_secs.max(1)),
            keep_alive: Duration::from_secs(self.keep_alive_secs.max(1)),
            max_header_bytes: self.max_header_bytes,
        }
    }
}

impl Settings {
    pub fn load(file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        Ok(kernel::config::load(file)?)
    }

    /// The auth database: as configured, else a SQLite file in the data directory.
    pub fn auth_database_url(&self) -> EngineUrl {
        self.auth.database_url.clone().unwrap_or_else(|| self.sqlite_in_data_dir("auth.db"))
    }

    /// The catalog database: as configured, else a SQLite file in the data directory.
    pub fn catalog_database_url(&self) -> EngineUrl {
        self.catalog.database_url.clone().unwrap_or_else(|| self.sqlite_in_data_dir("catalog.db"))
    }

    /// The streaming database: as configured, else a SQLite file in the data directory.
    pub fn streaming_database_url(&self) -> EngineUrl {
        self.streaming
            .database_url
            .clone()
            .unwrap_or_else(|| self.sqlite_in_data_dir("streaming.db"))
    }

    /// The analytics database: as configured, else a SQLite file in the data directory.
    pub fn analytics_database_url(&self) -> EngineUrl {
        self.analytics
            .database_url
            .clone()
            .unwrap_or_else(|| self.sqlite_in_data_dir("analytics.db"))
    }

    /// The AI service's database: as configured, else a SQLite file in the data directory.
    pub fn ai_database_url(&self) -> EngineUrl {
        self.ai.database_url.clone().unwrap_or_else(|| self.sqlite_in_data_dir("ai.db"))
    }

    /// The playlist database: as configured, else a SQLite file in the data directory.
    pub fn playlist_database_url(&self) -> EngineUrl {
        self.playlist.database_url.clone().unwrap_or_else(|| self.sqlite_in_data_dir("playlist.db"))
    }

    /// The people service's database: as configured, else a SQLite file in the data
    /// directory.
    pub fn people_database_url(&self) -> EngineUrl {
        self.people.database_url.clone().unwrap_or_else(|| self.sqlite_in_data_dir("people.db"))
    }

    pub fn people_cache_url(&self) -> EngineUrl {
        self.people.cache_url.clone().unwrap_or_else(memory)
    }

    pub fn streaming_cache_url(&self) -> EngineUrl {
        self.streaming.cache_url.clone().unwrap_or_else(memory)
    }

    pub fn ai_cache_url(&self) -> EngineUrl {
        self.ai.cache_url.clone().unwrap_or_else(memory)
    }

    pub fn auth_cache_url(&self) -> EngineUrl {
        self.auth.cache_url.clone().unwrap_or_else(memory)
    }

    pub fn gateway_cache_url(&self) -> EngineUrl {
        self.gateway.cache_url.clone().unwrap_or_else(memory)
    }

    fn sqlite_in_data_dir(&self, file: &str) -> EngineUrl {
        EngineUrl::new(format!("sqlite://{}", self.data_dir.join(file).display()))
    }
}

fn memory() -> EngineUrl {
    EngineUrl::new("memory://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_default_file_parses_and_matches_the_built_in_defaults() {
        let shipped: Settings = kernel::config::from_toml(DEFAULT_CONFIG).unwrap();
        let built_in = Settings::default();
        assert_eq!(format!("{shipped:?}"), format!("{built_in:?}"));
    }

    /// The files `deploy/kubernetes` ships as the ConfigMap: each one read whole, with
    /// every service's engines and upstreams where the manifests expect them.
    #[test]
    fn the_kubernetes_configuration_files_wire_every_service() {
        let files = [
            ("base", include_str!("../../../deploy/kubernetes/base/tonearm.toml")),
            ("dev", include_str!("../../../deploy/kubernetes/overlays/dev/tonearm.toml")),
            (
                "production",
                include_str!("../../../deploy/kubernetes/overlays/production/tonearm.toml"),
            ),
        ];
        for (name, text) in files {
            let settings: Settings =
                kernel::config::from_toml(text).unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!((settings.server.host.as_str(), settings.server.port), ("0.0.0.0", 8080));
            // terminationGracePeriodSeconds (40) covers the preStop pause (5) and this.
            assert!(settings.server.shutdown_grace_secs + 5 < 40, "{name}");
            assert_eq!(settings.data_dir, PathBuf::from("/var/lib/tonearm"), "{name}");
            let services =
                ["ai", "analytics", "auth", "catalog", "people", "playlist", "streaming"];
            assert_eq!(
                settings.gateway.upstreams.keys().map(String::as_str).collect::<Vec<_>>(),
                services,
                "{name}"
            );
            assert!(settings.events.url.as_ref().is_some_and(|url| url.scheme() == "kafka"));
            assert!(settings.storage.url.as_ref().is_some_and(|url| url.scheme() == "s3"));
            assert!(settings.telemetry.otlp_endpoint.is_some(), "{name}");
            for cache in [
                &settings.gateway.cache_url,
                &settings.auth.cache_url,
                &settings.streaming.cache_url,
                &settings.ai.cache_url,
                &settings.people.cache_url,
            ] {
                assert!(cache.as_ref().is_some_and(|url| url.scheme().starts_with("redis")));
            }
            for catalog in [
                &settings.playlist.catalog_url,
                &settings.analytics.catalog_url,
                &settings.ai.catalog_url,
                &settings.people.catalog_url,
            ] {
                assert_eq!(catalog.as_deref(), Some("http://catalog:8080"), "{name}");
            }
        }
    }

    #[test]
    fn secrets_never_reach_debug_output() {
        let mut settings = Settings::default();
        settings.auth.database_url =
            Some(EngineUrl::new("postgres://tonearm:hunter2@db:5432/tonearm_auth"));
        settings.auth.signing_key_pem = Some("-----BEGIN PRIVATE KEY-----sekrit".into());
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("sekrit"), "{printed}");
        assert!(printed.contains("db:5432"), "the rest stays readable: {printed}");
    }

    #[test]
    fn embedded_stores_default_to_the_data_dir() {
        let settings =
            Settings { data_dir: PathBuf::from("/var/lib/tonearm"), ..Settings::default() };
        assert_eq!(settings.auth_database_url().expose(), "sqlite:///var/lib/tonearm/auth.db");
        assert_eq!(settings.auth_cache_url().expose(), "memory://");
    }
}

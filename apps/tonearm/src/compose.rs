use std::{net::SocketAddr, sync::Arc, time::Duration};

use ai::{AiService, ModelsProbe, Recommendations};
use analytics::AnalyticsService;
use anyhow::Context;
use auth::AuthService;
use axum::Router;
use bus::{
    BusProbe, Event as _, EventBus,
    consumer::{BatchHandler, Consumer, ConsumerOptions, Handler, Handling},
    events::{
        ApiRequest, PaymentCompleted, PlaylistChanged, PlaylistCreated, PlaylistFollowed,
        PlaylistUnfollowed, SongLiked, SongPlayed, SongUnliked, SubscriptionChanged, TrackDeleted,
        TrackPublished, TrackTranscoded, TrackUploaded, UserDeleted, UserRegistered, UserUpdated,
    },
    outbox::{OutboxStore, Relay, RelayOptions},
};
use catalog::CatalogService;
use gateway::{
    GatewayParts, MediaUpstream, RemoteDirectory, RemoteService, Route, Upstream, UpstreamPolicy,
    UpstreamProbe,
};
use kernel::{
    background::Background,
    cache::{self, Cache},
    db::SqlPool,
    http::{CacheProbe, Probe, Server, SqlProbe},
};
use objects::{Objects, ObjectsProbe};
use people::{PeopleService, live::LiveHub};
use playlist::PlaylistService;
use streaming::StreamingService;
use utoipa::openapi::{
    OpenApi,
    security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::settings::Settings;

/// A service `tonearm serve` can run alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceName {
    Gateway,
    Auth,
    Catalog,
    Streaming,
    Playlist,
    Analytics,
    Ai,
    People,
}

/// A bound server with its router and the background work of its services, ready to run.
pub struct App {
    server: Server,
    router: Router,
    /// Stopped in order on shutdown: workers and consumers first, relays last, so that
    /// what they wrote is published before the process exits.
    background: Vec<Background>,
    /// Ended as soon as shutdown begins: live streams, which would otherwise hold the
    /// graceful shutdown open until its deadline.
    live: Option<Arc<LiveHub>>,
}

impl App {
    /// Every service in this process on embedded defaults, behind the gateway.
    pub async fn up(settings: &Settings) -> anyhow::Result<Self> {
        // Before any service registers its metrics, or they would go nowhere.
        kernel::http::prometheus();
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
        // One in-process cache serves the session grants and the rate-limit windows.
        let shared = open_cache("shared", &settings.auth_cache_url()).await?;
        let bus = open_bus(settings).await?;
        let (auth, auth_pool) = open_auth(settings, shared.clone()).await?;
        let (catalog, catalog_pool, objects) = open_catalog(settings).await?;
        let (streaming, streaming_pool) =
            open_streaming(settings, objects.clone(), shared.clone()).await?;
        let local_catalog = Arc::new(LocalCatalog(catalog.clone()));
        let (playlists, playlist_pool) = open_playlist(settings, local_catalog.clone()).await?;
        let (analytics, analytics_pool) = open_analytics(settings, local_catalog.clone()).await?;
        let ai = open_ai(settings, local_catalog.clone());
        let (recommendations, ai_pool) =
            open_recommendations(settings, local_catalog.clone(), shared.clone()).await?;
        let mut people_settings = settings.clone();
        if people_settings.people.billing.webhook_secrets.is_empty() {
            people_settings.people.billing.webhook_secrets = vec![local_webhook_secret(settings)?];
        }
        let live = LiveHub::local(settings.people.live_buffer);
        let (people, people_pool, mail) = open_people(
            &people_settings,
            Arc::new(LocalAccounts(auth.clone())),
            local_catalog,
            shared.clone(),
            live.clone(),
        )
        .await?;
        let mut background = streaming_work(&streaming, &bus);
        background.extend(auth_work(&auth, &bus));
        background.extend(people_work(&people, &bus));
        background.push(mail);
        background.extend(catalog_work(&catalog, &bus));
        background.extend(playlist_work(&playlists, &bus));
        background.extend(analytics_work(&analytics, &bus));
        background.extend(ai_work(&recommendations, &bus));
        background.extend([
            relay("auth", auth.store().clone(), &bus),
            relay("catalog", catalog.store().clone(), &bus),
            relay("streaming", streaming.store().clone(), &bus),
            relay("playlist", playlists.store().clone(), &bus),
            relay("analytics", analytics.store().clone(), &bus),
            relay("people", people.store().clone(), &bus),
        ]);
        let upload_limit = upload_limit(&catalog);
        let (auth_router, auth_api) = auth::router(auth.clone());
        let (catalog_router, catalog_api) = catalog::router(catalog);
        let (streaming_router, streaming_api) = streaming::router(streaming.clone());
        let (playlist_router, playlist_api) = playlist::router(playlists);
        let (analytics_router, analytics_api) = analytics::router(analytics.clone());
        let (ai_router, ai_api) = ai_routes(ai.clone(), recommendations);
        let (people_router, people_api) = people::router(people);
        let probes: Vec<Arc<dyn Probe>> = vec![
            Arc::new(SqlProbe { name: "auth.database".into(), pool: auth_pool }),
            Arc::new(SqlProbe { name: "catalog.database".into(), pool: catalog_pool }),
            Arc::new(SqlProbe { name: "streaming.database".into(), pool: streaming_pool }),
            Arc::new(SqlProbe { name: "playlist.database".into(), pool: playlist_pool }),
            Arc::new(SqlProbe { name: "analytics.database".into(), pool: analytics_pool }),
            Arc::new(SqlProbe { name: "ai.database".into(), pool: ai_pool }),
            Arc::new(SqlProbe { name: "people.database".into(), pool: people_pool }),
            Arc::new(WarehouseProbe(analytics)),
            Arc::new(CacheProbe { name: "cache".into(), cache: shared.clone() }),
            Arc::new(BusProbe(bus.clone())),
            Arc::new(ObjectsProbe(objects)),
            Arc::new(TranscoderProbe::new(streaming.clone())),
            // Optional here: everything but voice works without the models.
            Arc::new(ModelsProbe { service: ai.clone(), required: false }),
        ];
        let mut route_body_limits = vec![upload_limit];
        route_body_limits.extend(audio_limits(&settings.ai));
        let (router, request_events) = gateway::router(GatewayParts {
            internal_key: None,
            config: settings.gateway.clone(),
            directory: auth,
            cache: shared,
            api: public_api([
                &auth_api,
                &catalog_api,
                &streaming_api,
                &streaming::media_openapi(),
                &playlist_api,
                &analytics_api,
                &ai_api,
                &people_api,
            ]),
            routes: vec![
                Route { upstream: Upstream::Local(auth_router), api: auth_api },
                Route { upstream: Upstream::Local(catalog_router), api: catalog_api },
                Route { upstream: Upstream::Local(streaming_router), api: streaming_api },
                Route { upstream: Upstream::Local(playlist_router), api: playlist_api },
                Route { upstream: Upstream::Local(analytics_router), api: analytics_api },
                Route { upstream: Upstream::Local(ai_router), api: ai_api },
                Route { upstream: Upstream::Local(people_router), api: people_api },
            ],
            probes,
            route_body_limits,
            media: Some(MediaUpstream::Local(kernel::http::HotService::new(
                streaming::media_service(streaming),
            ))),
            request_events: Some(bus),
        });
        background.extend(request_events);
        let mut app = Self::bind(settings, router, background).await?;
        app.live = Some(live);
        Ok(app)
    }

    /// One service alone, on the engines its configuration names.
    pub async fn serve(settings: &Settings, service: ServiceName) -> anyhow::Result<Self> {
        // Before any service registers its metrics, or they would go nowhere.
        kernel::http::prometheus();
        let mut live = None;
        let (router, background) = match service {
            ServiceName::Auth => {
                let cache = open_cache("auth.cache", &settings.auth_cache_url()).await?;
                let bus = open_bus(settings).await?;
                let (auth, pool) = open_auth(settings, cache.clone()).await?;
                let mut relays = auth_work(&auth, &bus);
                relays.push(relay("auth", auth.store().clone(), &bus));
                let (public, _) = auth::router(auth.clone());
                let probes: Vec<Arc<dyn Probe>> = vec![
                    Arc::new(SqlProbe { name: "auth.database".into(), pool }),
                    Arc::new(CacheProbe { name: "auth.cache".into(), cache }),
                    Arc::new(BusProbe(bus)),
                ];
                let router = kernel::http::observe(
                    public
                        .merge(auth::internal_router(auth))
                        .merge(kernel::http::ops_router(probes)),
                );
                (router, relays)
            }
            ServiceName::Catalog => {
                let bus = open_bus(settings).await?;
                let (catalog, pool, objects) = open_catalog(settings).await?;
                let mut background = catalog_work(&catalog, &bus);
                background.push(relay("catalog", catalog.store().clone(), &bus));
                let (public, _) = catalog::router(catalog);
                let probes: Vec<Arc<dyn Probe>> = vec![
                    Arc::new(SqlProbe { name: "catalog.database".into(), pool }),
                    Arc::new(BusProbe(bus)),
                    Arc::new(ObjectsProbe(objects)),
                ];
                let router = kernel::http::observe(public.merge(kernel::http::ops_router(probes)));
                (router, background)
            }
            ServiceName::Streaming => {
                let bus = open_bus(settings).await?;
                let objects = Objects::connect(&settings.storage, &settings.data_dir).await?;
                let cache = open_cache("streaming.cache", &settings.streaming_cache_url()).await?;
                let (streaming, pool) =
                    open_streaming(settings, objects.clone(), cache.clone()).await?;
                let mut background = streaming_work(&streaming, &bus);
                background.push(relay("streaming", streaming.store().clone(), &bus));
                // Replicas each keep segments in memory, and the deletions group hands a
                // deletion to one of them. Alone on its bus, the deletions consumer suffices.
                if bus.shared_between_processes() {
                    background.push(consume(
                        &bus,
                        TrackDeleted::TYPE,
                        &streaming::events::segment_cache_group(),
                        streaming::events::CachedSegments(streaming.clone()),
                    ));
                }
                let (public, _) = streaming::router(streaming.clone());
                let probes: Vec<Arc<dyn Probe>> = vec![
                    Arc::new(SqlProbe { name: "streaming.database".into(), pool }),
                    Arc::new(CacheProbe { name: "streaming.cache".into(), cache }),
                    Arc::new(BusProbe(bus)),
                    Arc::new(ObjectsProbe(objects)),
                    Arc::new(TranscoderProbe::new(streaming.clone())),
                ];
                // Signed media is the hot path: it skips the API routes' layers.
                let router = kernel::http::split(
                    kernel::api::MEDIA_PREFIX,
                    kernel::http::observe_service(
                        kernel::api::MEDIA_ROUTE,
                        streaming::media_service(streaming),
                    ),
                    kernel::http::observe(public.merge(kernel::http::ops_router(probes))),
                );
                (router, background)
            }
            ServiceName::Playlist => {
                let bus = open_bus(settings).await?;
                let catalog_url = settings.playlist.catalog_url.as_deref().context(
                    "`tonearm serve playlist` needs playlist.catalog_url (TONEARM_PLAYLIST__CATALOG_URL)",
                )?;
                let catalog = Arc::new(kernel::catalog::RemoteCatalog::new(
                    catalog_url,
                    internal_key(settings)?,
                )?);
                let (playlists, pool) = open_playlist(settings, catalog).await?;
                let mut background = playlist_work(&playlists, &bus);
                background.push(relay("playlist", playlists.store().clone(), &bus));
                let (public, _) = playlist::router(playlists);
                let probes: Vec<Arc<dyn Probe>> = vec![
                    Arc::new(SqlProbe { name: "playlist.database".into(), pool }),
                    Arc::new(BusProbe(bus)),
                ];
                let router = kernel::http::observe(public.merge(kernel::http::ops_router(probes)));
                (router, background)
            }
            ServiceName::Analytics => {
                let bus = open_bus(settings).await?;
                let catalog_url = settings.analytics.catalog_url.as_deref().context(
                    "`tonearm serve analytics` needs analytics.catalog_url (TONEARM_ANALYTICS__CATALOG_URL)",
                )?;
                let catalog = Arc::new(kernel::catalog::RemoteCatalog::new(
                    catalog_url,
                    internal_key(settings)?,
                )?);
                let (analytics, pool) = open_analytics(settings, catalog).await?;
                let mut background = analytics_work(&analytics, &bus);
                background.push(relay("analytics", analytics.store().clone(), &bus));
                let (public, _) = analytics::router(analytics.clone());
                let probes: Vec<Arc<dyn Probe>> = vec![
                    Arc::new(SqlProbe { name: "analytics.database".into(), pool }),
                    Arc::new(WarehouseProbe(analytics)),
                    Arc::new(BusProbe(bus)),
                ];
                let router = kernel::http::observe(public.merge(kernel::http::ops_router(probes)));
                (router, background)
            }
            ServiceName::Ai => {
                let catalog_url =
                    settings.ai.catalog_url.as_deref().context(
                        "`tonearm serve ai` needs ai.catalog_url (TONEARM_AI__CATALOG_URL)",
                    )?;
                let catalog = Arc::new(kernel::catalog::RemoteCatalog::new(
                    catalog_url,
                    internal_key(settings)?,
                )?);
                let bus = open_bus(settings).await?;
                let cache = open_cache("ai.cache", &settings.ai_cache_url()).await?;
                let ai = open_ai(settings, catalog.clone());
                let (recommendations, pool) =
                    open_recommendations(settings, catalog, cache.clone()).await?;
                let mut background = ai_work(&recommendations, &bus);
                // Replicas each keep the model in memory, and the shared groups hand each
                // track event to one of them: every replica also reads them in its own.
                if bus.shared_between_processes() {
                    let group = ai::events::replica_group();
                    let replica = || ai::events::Replica(recommendations.clone());
                    background.push(consume(&bus, TrackPublished::TYPE, &group, replica()));
                    background.push(consume(&bus, TrackDeleted::TYPE, &group, replica()));
                }
                let (public, _) = ai_routes(ai.clone(), recommendations);
                // Alone, the service is nothing without its models.
                let probes: Vec<Arc<dyn Probe>> = vec![
                    Arc::new(ModelsProbe { service: ai, required: true }),
                    Arc::new(SqlProbe { name: "ai.database".into(), pool }),
                    Arc::new(CacheProbe { name: "ai.cache".into(), cache }),
                    Arc::new(BusProbe(bus)),
                ];
                let router = kernel::http::observe(public.merge(kernel::http::ops_router(probes)));
                (router, background)
            }
            ServiceName::People => {
                let auth_url = settings.people.auth_url.as_deref().context(
                    "`tonearm serve people` needs people.auth_url (TONEARM_PEOPLE__AUTH_URL)",
                )?;
                let catalog_url = settings.people.catalog_url.as_deref().context(
                    "`tonearm serve people` needs people.catalog_url (TONEARM_PEOPLE__CATALOG_URL)",
                )?;
                let accounts = Arc::new(people::accounts::RemoteAccounts::new(
                    auth_url,
                    internal_key(settings)?,
                )?);
                let catalog = Arc::new(kernel::catalog::RemoteCatalog::new(
                    catalog_url,
                    internal_key(settings)?,
                )?);
                let bus = open_bus(settings).await?;
                let cache_url = settings.people_cache_url();
                let cache = open_cache("people.cache", &cache_url).await?;
                let hub = match cache_url.scheme() {
                    "redis" | "rediss" => {
                        LiveHub::redis(&cache_url, settings.people.live_buffer).await?
                    }
                    _ => LiveHub::local(settings.people.live_buffer),
                };
                live = Some(hub.clone());
                let (people, pool, mail) =
                    open_people(settings, accounts, catalog, cache.clone(), hub).await?;
                let mut background = people_work(&people, &bus);
                background.push(mail);
                background.push(relay("people", people.store().clone(), &bus));
                let (public, _) = people::router(people);
                let probes: Vec<Arc<dyn Probe>> = vec![
                    Arc::new(SqlProbe { name: "people.database".into(), pool }),
                    Arc::new(CacheProbe { name: "people.cache".into(), cache }),
                    Arc::new(BusProbe(bus)),
                ];
                let router = kernel::http::observe(public.merge(kernel::http::ops_router(probes)));
                (router, background)
            }
            ServiceName::Gateway => gateway_alone(settings).await?,
        };
        // Alone, a service believes only identity the gateway (or another service) proves.
        let router = match service {
            ServiceName::Gateway => router,
            _ => router.layer(axum::middleware::from_fn_with_state(
                internal_key(settings)?,
                kernel::internal::guard,
            )),
        };
        let mut app = Self::bind(settings, router, background).await?;
        app.live = live;
        Ok(app)
    }

    async fn bind(
        settings: &Settings,
        router: Router,
        background: Vec<Background>,
    ) -> anyhow::Result<Self> {
        let addr = settings.server.addr()?;
        let server = Server::bind(addr, settings.server.limits())
            .await
            .with_context(|| format!("binding {addr}"))?;
        Ok(Self { server, router, background, live: None })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.server.local_addr()
    }

    /// The router, for tests that call it without a socket.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves until `shutdown`, then stops the background work in order, so that the
    /// relays publish what the last requests and jobs wrote.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let live = self.live;
        let shutdown = async move {
            shutdown.await;
            if let Some(live) = live {
                live.close();
            }
        };
        let served = self.server.run(self.router, shutdown).await.context("serving");
        for work in self.background {
            work.stop().await;
        }
        served
    }
}

async fn open_cache(
    name: &'static str,
    url: &kernel::engine::EngineUrl,
) -> anyhow::Result<Arc<dyn Cache>> {
    let cache = cache::connect(name, url).await?;
    tracing::info!(engine = cache.engine(), url = %url, "cache ready");
    Ok(cache)
}

async fn open_bus(settings: &Settings) -> anyhow::Result<Arc<dyn EventBus>> {
    let bus = bus::connect(&settings.events, &settings.data_dir).await?;
    tracing::info!(engine = bus.engine(), "event bus ready");
    Ok(bus)
}

/// Publishes a service's outbox to the bus in the background.
fn relay(
    service: &'static str,
    outbox: Arc<dyn OutboxStore>,
    bus: &Arc<dyn EventBus>,
) -> Background {
    Relay::new(service, outbox, bus.clone(), RelayOptions::default()).spawn()
}

/// Runs `handler` over `topic` as consumer group `group`, in the background.
fn consume(bus: &Arc<dyn EventBus>, topic: &str, group: &str, handler: impl Handler) -> Background {
    Consumer {
        bus: bus.clone(),
        topic: topic.to_owned(),
        group: group.to_owned(),
        handler: Handling::Each(Arc::new(handler)),
        options: ConsumerOptions::default(),
    }
    .spawn()
}

/// Runs `handler` over `topic` as consumer group `group`, up to `batch` records at a time,
/// in the background.
fn consume_batches(
    bus: &Arc<dyn EventBus>,
    topic: &str,
    group: &str,
    handler: Arc<dyn BatchHandler>,
    batch: usize,
) -> Background {
    Consumer {
        bus: bus.clone(),
        topic: topic.to_owned(),
        group: group.to_owned(),
        handler: Handling::Batch(handler),
        options: ConsumerOptions { batch, ..ConsumerOptions::default() },
    }
    .spawn()
}

/// The catalog's background work: applying transcode results, and settling the uploads
/// of deleted accounts.
fn catalog_work(catalog: &Arc<CatalogService>, bus: &Arc<dyn EventBus>) -> Vec<Background> {
    use catalog::events::{TRANSCODE_GROUP, TranscodeResults, USERS_GROUP, UserDeletions};
    vec![
        consume(bus, TrackTranscoded::TYPE, TRANSCODE_GROUP, TranscodeResults(catalog.clone())),
        consume(bus, UserDeleted::TYPE, USERS_GROUP, UserDeletions(catalog.clone())),
    ]
}

/// Streaming's background work: the transcode workers and the consumers that feed them.
fn streaming_work(streaming: &Arc<StreamingService>, bus: &Arc<dyn EventBus>) -> Vec<Background> {
    use streaming::events::{DELETIONS_GROUP, Deletions, UPLOADS_GROUP, Uploads};
    vec![
        streaming::worker::Workers::new(streaming.clone()).spawn(),
        consume(bus, TrackUploaded::TYPE, UPLOADS_GROUP, Uploads(streaming.clone())),
        consume(bus, TrackDeleted::TYPE, DELETIONS_GROUP, Deletions(streaming.clone())),
    ]
}

/// The playlist service's background work: its projection of the catalog's tracks, and
/// the removal of deleted accounts' playlists, follows and likes.
fn playlist_work(playlists: &Arc<PlaylistService>, bus: &Arc<dyn EventBus>) -> Vec<Background> {
    use playlist::events::{
        DELETED_GROUP, Deleted, PUBLISHED_GROUP, Published, USERS_GROUP, UserDeletions,
    };
    vec![
        consume(bus, TrackPublished::TYPE, PUBLISHED_GROUP, Published(playlists.clone())),
        consume(bus, TrackDeleted::TYPE, DELETED_GROUP, Deleted(playlists.clone())),
        consume(bus, UserDeleted::TYPE, USERS_GROUP, UserDeletions(playlists.clone())),
    ]
}

/// The analytics service's background work: counting plays, activity and request
/// metrics into the warehouse, its projection of the catalog's tracks, and forgetting
/// deleted accounts' listening.
fn analytics_work(analytics: &Arc<AnalyticsService>, bus: &Arc<dyn EventBus>) -> Vec<Background> {
    use analytics::events::{
        Activity, DELETED_GROUP, Deleted, LIKES_GROUP, PLAYS_GROUP, PUBLISHED_GROUP, Plays,
        Published, REGISTRATIONS_GROUP, REQUESTS_GROUP, Requests, UNLIKES_GROUP, USERS_GROUP,
        UserDeletions,
    };
    let batch = analytics.config().ingest_batch.max(1);
    let together = |topic: &str, group: &str, handler: Arc<dyn BatchHandler>| {
        consume_batches(bus, topic, group, handler, batch)
    };
    vec![
        together(SongPlayed::TYPE, PLAYS_GROUP, Arc::new(Plays(analytics.clone()))),
        together(SongLiked::TYPE, LIKES_GROUP, Arc::new(Activity(analytics.clone()))),
        together(SongUnliked::TYPE, UNLIKES_GROUP, Arc::new(Activity(analytics.clone()))),
        together(UserRegistered::TYPE, REGISTRATIONS_GROUP, Arc::new(Activity(analytics.clone()))),
        together(ApiRequest::TYPE, REQUESTS_GROUP, Arc::new(Requests(analytics.clone()))),
        consume(bus, TrackPublished::TYPE, PUBLISHED_GROUP, Published(analytics.clone())),
        consume(bus, TrackDeleted::TYPE, DELETED_GROUP, Deleted(analytics.clone())),
        consume(bus, UserDeleted::TYPE, USERS_GROUP, UserDeletions(analytics.clone())),
    ]
}

/// Opens the analytics store (migrated) and its warehouse, and builds the service.
pub async fn open_analytics(
    settings: &Settings,
    catalog: Arc<dyn kernel::catalog::Catalog>,
) -> anyhow::Result<(Arc<AnalyticsService>, SqlPool)> {
    let url = settings.analytics_database_url();
    let pool = SqlPool::connect(&url, analytics::DATABASE_NAME).await?;
    let store =
        analytics::store::open(pool.clone()).await.context("migrating the analytics database")?;
    let warehouse = open_warehouse(settings, pool.clone()).await?;
    tracing::info!(engine = pool.engine(), "analytics ready");
    let service = AnalyticsService::new(store, warehouse, catalog, settings.analytics.clone());
    Ok((Arc::new(service), pool))
}

/// Opens the analytics warehouse the settings name (migrated): ClickHouse, whose ledger of
/// counted facts lives in the analytics database `pool`, or the embedded one.
pub async fn open_warehouse(
    settings: &Settings,
    pool: SqlPool,
) -> anyhow::Result<Arc<dyn analytics::warehouse::Warehouse>> {
    use analytics::warehouse::{
        Warehouse, clickhouse::ClickHouseWarehouse, embedded::EmbeddedWarehouse,
    };
    let warehouse: Arc<dyn Warehouse> = match &settings.analytics.warehouse_url {
        Some(url) if url.scheme() == "clickhouse" => Arc::new(
            ClickHouseWarehouse::connect(url.expose(), pool)
                .await
                .with_context(|| format!("connecting to ClickHouse at {}", url.redacted()))?,
        ),
        Some(url) => anyhow::bail!(
            "analytics.warehouse_url must be clickhouse://… (or unset for the embedded warehouse), not {}",
            url.redacted()
        ),
        None => {
            let path = settings.data_dir.join("analytics-warehouse.db");
            Arc::new(
                EmbeddedWarehouse::open(&path, settings.analytics.warehouse_cache_mib)
                    .await
                    .with_context(|| {
                        format!("opening the analytics warehouse {}", path.display())
                    })?,
            )
        }
    };
    warehouse.migrate().await.context("migrating the analytics warehouse")?;
    Ok(warehouse)
}

/// Ready when the analytics warehouse answers.
struct WarehouseProbe(Arc<AnalyticsService>);

#[async_trait::async_trait]
impl Probe for WarehouseProbe {
    fn name(&self) -> String {
        "analytics.warehouse".into()
    }

    async fn check(&self) -> Result<(), String> {
        self.0.warehouse().ping().await.map_err(|error| error.to_string())
    }
}

/// Opens the playlist store (migrated) and builds the service.
pub async fn open_playlist(
    settings: &Settings,
    catalog: Arc<dyn kernel::catalog::Catalog>,
) -> anyhow::Result<(Arc<PlaylistService>, SqlPool)> {
    let url = settings.playlist_database_url();
    let pool = SqlPool::connect(&url, playlist::DATABASE_NAME).await?;
    let store =
        playlist::store::open(pool.clone()).await.context("migrating the playlist database")?;
    tracing::info!(engine = pool.engine(), "playlists ready");
    let service = PlaylistService::new(store, catalog, settings.playlist.clone());
    Ok((Arc::new(service), pool))
}

/// Builds the AI service and starts loading its models in the background: requests get
/// 503 until they are loaded (a second or two), and the rest of Tonearm does not wait.
pub fn open_ai(
    settings: &Settings,
    catalog: Arc<dyn kernel::catalog::CatalogSearch>,
) -> Arc<AiService> {
    let ai = Arc::new(AiService::new(settings.ai.clone(), catalog));
    let loading = ai.clone();
    tokio::spawn(async move { loading.load_models().await });
    ai
}

/// Opens the AI service's store (migrated) and builds recommendations over it; they load
/// and train in the background ([`ai_work`]).
pub async fn open_recommendations(
    settings: &Settings,
    catalog: Arc<dyn kernel::catalog::Catalog>,
    cache: Arc<dyn Cache>,
) -> anyhow::Result<(Arc<Recommendations>, SqlPool)> {
    let url = settings.ai_database_url();
    let pool = SqlPool::connect(&url, ai::DATABASE_NAME).await?;
    let store = ai::store::open(pool.clone()).await.context("migrating the AI database")?;
    tracing::info!(engine = pool.engine(), "recommendations store ready");
    let service = Recommendations::new(settings.ai.clone(), store, cache, catalog);
    Ok((Arc::new(service), pool))
}

/// The AI service's public routes, voice and recommendations, as one.
fn ai_routes(ai: Arc<AiService>, recommendations: Arc<Recommendations>) -> (Router, OpenApi) {
    let (voice, mut api) = ai::router(ai);
    let (taste, taste_api) = ai::recommendations_router(recommendations);
    api.merge(taste_api);
    (voice.merge(taste), api)
}

/// The AI service's background work: loading and retraining recommendations, and the
/// tracks and listening they learn from.
fn ai_work(recommendations: &Arc<Recommendations>, bus: &Arc<dyn EventBus>) -> Vec<Background> {
    use ai::events::{
        DELETED_GROUP, Deleted, LIKES_GROUP, Listening, PLAYS_GROUP, PUBLISHED_GROUP, Published,
        UNLIKES_GROUP, USERS_GROUP, UserDeletions,
    };
    let batch = ConsumerOptions::default().batch;
    let together = |topic: &str, group: &str, handler: Arc<dyn BatchHandler>| {
        consume_batches(bus, topic, group, handler, batch)
    };
    let listening = |consumer: &'static str| {
        Arc::new(Listening { service: recommendations.clone(), consumer }) as Arc<dyn BatchHandler>
    };
    vec![
        recommendations.spawn_schedule(),
        together(
            TrackPublished::TYPE,
            PUBLISHED_GROUP,
            Arc::new(Published(recommendations.clone())),
        ),
        together(SongPlayed::TYPE, PLAYS_GROUP, listening(PLAYS_GROUP)),
        together(SongLiked::TYPE, LIKES_GROUP, listening(LIKES_GROUP)),
        together(SongUnliked::TYPE, UNLIKES_GROUP, listening(UNLIKES_GROUP)),
        consume(bus, TrackDeleted::TYPE, DELETED_GROUP, Deleted(recommendations.clone())),
        consume(bus, UserDeleted::TYPE, USERS_GROUP, UserDeletions(recommendations.clone())),
    ]
}

/// Audio bodies are far larger than the API's default limit.
fn audio_limits(config: &ai::AiConfig) -> Vec<(String, usize)> {
    let limit = usize::try_from(config.max_upload_bytes).unwrap_or(usize::MAX);
    ai::http::AUDIO_ROUTES.iter().map(|route| ((*route).to_owned(), limit)).collect()
}

/// The catalog in this process, as the playlist and analytics services ask it about tracks.
struct LocalCatalog(Arc<CatalogService>);

#[async_trait::async_trait]
impl kernel::catalog::Catalog for LocalCatalog {
    async fn ready_tracks(
        &self,
        _caller: &kernel::caller::Caller,
        ids: &[uuid::Uuid],
    ) -> Result<Vec<kernel::api::TrackSummary>, String> {
        let mut ready = Vec::new();
        for id in ids {
            match self.0.track(*id).await {
                Ok(track) if track.status == catalog::domain::TrackStatus::Ready => {
                    ready.push(kernel::api::TrackSummary {
                        id: track.id,
                        title: track.title,
                        artist: kernel::api::ArtistRef {
                            id: track.artist.id,
                            name: track.artist.name,
                        },
                        album: kernel::api::AlbumRef { id: track.album.0, title: track.album.1 },
                        duration_ms: track.duration_ms,
                    });
                }
                Ok(_) | Err(catalog::domain::CatalogError::NotFound(_)) => {}
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(ready)
    }
}

#[async_trait::async_trait]
impl kernel::catalog::CatalogSearch for LocalCatalog {
    async fn search(
        &self,
        _caller: &kernel::caller::Caller,
        query: &str,
        limit: u32,
    ) -> Result<kernel::api::SearchResults, String> {
        use kernel::api::{ArtistRef, Page, SearchAlbum, TrackSummary};
        let found = self
            .0
            .search(query, catalog::service::Sections::ALL, limit, 0)
            .await
            .map_err(|error| error.to_string())?;
        Ok(kernel::api::SearchResults {
            tracks: Page::of(
                found.tracks.items.iter().map(TrackSummary::from).collect(),
                found.tracks.total,
                limit,
                0,
            ),
            albums: Page::of(
                found
                    .albums
                    .items
                    .into_iter()
                    .map(|(id, title, artist)| SearchAlbum {
                        id,
                        title,
                        artist: ArtistRef { id: artist.id, name: artist.name },
                    })
                    .collect(),
                found.albums.total,
                limit,
                0,
            ),
            artists: Page::of(
                found
                    .artists
                    .items
                    .into_iter()
                    .map(|artist| ArtistRef { id: artist.id, name: artist.name })
                    .collect(),
                found.artists.total,
                limit,
                0,
            ),
        })
    }
}

/// Opens the streaming store (migrated) and builds the service. On SQLite, the embedded
/// shape, this process alone runs transcodes, so jobs that were running when it last
/// stopped are queued again at once rather than after their leases lapse.
pub async fn open_streaming(
    settings: &Settings,
    objects: Objects,
    cache: Arc<dyn Cache>,
) -> anyhow::Result<(Arc<StreamingService>, SqlPool)> {
    let url = settings.streaming_database_url();
    let pool = SqlPool::connect(&url, streaming::DATABASE_NAME).await?;
    let store =
        streaming::store::open(pool.clone()).await.context("migrating the streaming database")?;
    if matches!(pool, SqlPool::Sqlite(_)) {
        let requeued = store.requeue_running(chrono::Utc::now()).await?;
        if requeued > 0 {
            tracing::info!(requeued, "resuming transcodes interrupted by the last stop");
        }
    }
    let service = StreamingService::open(
        store,
        objects,
        cache,
        settings.streaming.clone(),
        &settings.data_dir,
    )
    .await
    .context("opening streaming")?;
    tracing::info!(engine = pool.engine(), "streaming ready");
    Ok((Arc::new(service), pool))
}

/// Ready once ffmpeg and ffprobe have run; checked until they have.
struct TranscoderProbe {
    streaming: Arc<StreamingService>,
    found: tokio::sync::OnceCell<()>,
}

impl TranscoderProbe {
    fn new(streaming: Arc<StreamingService>) -> Self {
        Self { streaming, found: tokio::sync::OnceCell::new() }
    }
}

#[async_trait::async_trait]
impl Probe for TranscoderProbe {
    fn name(&self) -> String {
        "streaming.ffmpeg".into()
    }

    async fn check(&self) -> Result<(), String> {
        self.found
            .get_or_try_init(|| async { self.streaming.transcoder().version().await.map(drop) })
            .await
            .map(drop)
    }
}

/// Opens the catalog store (migrated) and object storage, and builds the service.
pub async fn open_catalog(
    settings: &Settings,
) -> anyhow::Result<(Arc<CatalogService>, SqlPool, Objects)> {
    let url = settings.catalog_database_url();
    let pool = SqlPool::connect(&url, catalog::DATABASE_NAME).await?;
    let store =
        catalog::store::open(pool.clone()).await.context("migrating the catalog database")?;
    let objects = Objects::connect(&settings.storage, &settings.data_dir).await?;
    tracing::info!(engine = pool.engine(), storage = objects.engine(), "catalog ready");
    let service = CatalogService::new(store, objects.clone(), settings.catalog.clone());
    Ok((Arc::new(service), pool, objects))
}

/// Uploads take bodies far larger than the API's default limit.
fn upload_limit(catalog: &CatalogService) -> (String, usize) {
    let limit = usize::try_from(catalog.max_upload_bytes()).unwrap_or(usize::MAX);
    ("/v1/tracks".to_owned(), limit)
}

/// The secret every process of a deployment shares, which `tonearm serve` needs: without
/// it a service could not tell the gateway's requests from anyone else's.
fn internal_key(settings: &Settings) -> anyhow::Result<kernel::internal::InternalKey> {
    let secret = settings.internal.identity_secret.clone().context(
        "`tonearm serve` needs internal.identity_secret (TONEARM_INTERNAL__IDENTITY_SECRET), \
         one secret shared by the gateway and every service",
    )?;
    Ok(kernel::internal::InternalKey::new(secret))
}

/// The auth service's background work: applying subscription changes to premium.
fn auth_work(auth: &Arc<AuthService>, bus: &Arc<dyn EventBus>) -> Vec<Background> {
    use auth::events::{PAYMENTS_GROUP, Premium, SUBSCRIPTIONS_GROUP};
    let premium = |group| Premium { service: auth.clone(), group };
    vec![
        consume(bus, PaymentCompleted::TYPE, PAYMENTS_GROUP, premium(PAYMENTS_GROUP)),
        consume(bus, SubscriptionChanged::TYPE, SUBSCRIPTIONS_GROUP, premium(SUBSCRIPTIONS_GROUP)),
    ]
}

/// Opens the people store (migrated) and builds the service, with the task that sends
/// its mail queue. On SQLite, the embedded shape, this process alone sends mail, so
/// messages held when it last stopped are let go at once rather than after their hold.
pub async fn open_people(
    settings: &Settings,
    accounts: Arc<dyn people::accounts::Accounts>,
    catalog: Arc<dyn kernel::catalog::Catalog>,
    presence: Arc<dyn Cache>,
    hub: Arc<LiveHub>,
) -> anyhow::Result<(Arc<PeopleService>, SqlPool, Background)> {
    let url = settings.people_database_url();
    let pool = SqlPool::connect(&url, people::DATABASE_NAME).await?;
    let store = people::store::open(pool.clone()).await.context("migrating the people database")?;
    if matches!(pool, SqlPool::Sqlite(_)) {
        let released = store.release_mail_claims().await?;
        if released > 0 {
            tracing::info!(released, "resuming mail interrupted by the last stop");
        }
    }
    let transport = people::mailer::transport(&settings.people.mail, &settings.data_dir)
        .map_err(anyhow::Error::msg)?;
    tracing::info!(
        engine = pool.engine(),
        mail = transport.engine(),
        live = hub.engine(),
        "people ready"
    );
    let mail = people::mailer::spawn_sender(store.clone(), transport, settings.people.mail.clone());
    let service =
        PeopleService::new(store, accounts, catalog, presence, hub, settings.people.clone());
    Ok((Arc::new(service), pool, mail))
}

/// The people service's background work: its projection of accounts and the welcome
/// mail, notifications from playlists, and now-playing from plays.
fn people_work(people: &Arc<PeopleService>, bus: &Arc<dyn EventBus>) -> Vec<Background> {
    use people::events::{
        PLAYLISTS_CHANGED_GROUP, PLAYLISTS_CREATED_GROUP, PLAYLISTS_FOLLOWED_GROUP,
        PLAYLISTS_UNFOLLOWED_GROUP, PLAYS_GROUP, PlaylistFollows, PlaylistUnfollows,
        PlaylistsChanged, PlaylistsCreated, Plays, REGISTRATIONS_GROUP, RENAMES_GROUP,
        Registrations, Renames, USERS_GROUP, UserDeletions,
    };
    vec![
        consume(bus, UserRegistered::TYPE, REGISTRATIONS_GROUP, Registrations(people.clone())),
        consume(bus, UserUpdated::TYPE, RENAMES_GROUP, Renames(people.clone())),
        consume(bus, UserDeleted::TYPE, USERS_GROUP, UserDeletions(people.clone())),
        consume(
            bus,
            PlaylistCreated::TYPE,
            PLAYLISTS_CREATED_GROUP,
            PlaylistsCreated(people.clone()),
        ),
        consume(
            bus,
            PlaylistChanged::TYPE,
            PLAYLISTS_CHANGED_GROUP,
            PlaylistsChanged(people.clone()),
        ),
        consume(
            bus,
            PlaylistFollowed::TYPE,
            PLAYLISTS_FOLLOWED_GROUP,
            PlaylistFollows(people.clone()),
        ),
        consume(
            bus,
            PlaylistUnfollowed::TYPE,
            PLAYLISTS_UNFOLLOWED_GROUP,
            PlaylistUnfollows(people.clone()),
        ),
        consume(bus, SongPlayed::TYPE, PLAYS_GROUP, Plays(people.clone())),
    ]
}

/// The webhook secret `tonearm up` uses when none is configured: made once and kept in
/// the data directory, where `tonearm billing simulate` finds it too.
pub fn local_webhook_secret(settings: &Settings) -> anyhow::Result<secrecy::SecretString> {
    let path = settings.data_dir.join("billing-webhook-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok(existing.to_owned().into());
        }
    }
    let secret = format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()));
    std::fs::create_dir_all(&settings.data_dir)?;
    // Readable by its owner alone: whoever holds it can make anyone premium.
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)
    }
    .with_context(|| format!("writing the webhook secret {}", path.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())?;
    Ok(secret.into())
}

/// The auth service in this process, as the people service asks it about accounts.
struct LocalAccounts(Arc<AuthService>);

#[async_trait::async_trait]
impl people::accounts::Accounts for LocalAccounts {
    async fn account(&self, id: uuid::Uuid) -> Result<Option<people::accounts::Account>, String> {
        let user = self.0.user(id).await.map_err(|error| error.to_string())?;
        Ok(user.map(account))
    }

    async fn account_by_email(
        &self,
        email: &str,
    ) -> Result<Option<people::accounts::Account>, String> {
        match self.0.user_by_email(email).await {
            Ok(user) => Ok(Some(account(user))),
            Err(
                auth::domain::AuthError::UserNotFound | auth::domain::AuthError::Invalid { .. },
            ) => Ok(None),
            Err(error) => Err(error.to_string()),
        }
    }
}

fn account(user: auth::domain::User) -> people::accounts::Account {
    people::accounts::Account {
        id: user.id,
        display_name: user.display_name,
        email: user.email,
        created_at: user.created_at,
    }
}

/// Opens the auth store (migrated) and builds the service.
pub async fn open_auth(
    settings: &Settings,
    cache: Arc<dyn Cache>,
) -> anyhow::Result<(Arc<AuthService>, SqlPool)> {
    let url = settings.auth_database_url();
    let pool = SqlPool::connect(&url, auth::DATABASE_NAME).await?;
    let store = auth::store::open(pool.clone()).await.context("migrating the auth database")?;
    tracing::info!(engine = pool.engine(), url = %url, "auth store ready");
    let service = AuthService::new(store, cache, settings.auth.clone()).await?;
    Ok((Arc::new(service), pool))
}

async fn gateway_alone(settings: &Settings) -> anyhow::Result<(Router, Vec<Background>)> {
    let config = &settings.gateway;
    let key = internal_key(settings)?;
    let policy = UpstreamPolicy::from_config(config, Some(key.clone()));
    let auth_url = config.upstreams.get("auth").context(
        "`tonearm serve gateway` needs gateway.upstreams.auth (TONEARM_GATEWAY__UPSTREAMS__AUTH)",
    )?;
    let auth = RemoteService::new("auth", auth_url, &policy)?;
    let cache = open_cache("gateway.cache", &settings.gateway_cache_url()).await?;
    let bus = open_bus(settings).await?;
    let mut probes: Vec<Arc<dyn Probe>> = vec![
        Arc::new(CacheProbe { name: "gateway.cache".into(), cache: cache.clone() }),
        Arc::new(UpstreamProbe(auth.clone())),
    ];
    let directory = Arc::new(RemoteDirectory::new(
        auth.clone(),
        cache.clone(),
        Duration::from_secs(config.grant_max_age_secs),
    ));
    let mut routes = vec![Route { upstream: Upstream::Remote(auth), api: auth::openapi() }];
    // Services other than auth are optional: the gateway fronts those it is told about.
    if let Some(url) = config.upstreams.get("catalog") {
        let catalog = RemoteService::new("catalog", url, &policy)?;
        probes.push(Arc::new(UpstreamProbe(catalog.clone())));
        routes.push(Route { upstream: Upstream::Remote(catalog), api: catalog::openapi() });
    }
    if let Some(url) = config.upstreams.get("analytics") {
        let analytics = RemoteService::new("analytics", url, &policy)?;
        probes.push(Arc::new(UpstreamProbe(analytics.clone())));
        routes.push(Route { upstream: Upstream::Remote(analytics), api: analytics::openapi() });
    }
    if let Some(url) = config.upstreams.get("playlist") {
        let playlists = RemoteService::new("playlist", url, &policy)?;
        probes.push(Arc::new(UpstreamProbe(playlists.clone())));
        routes.push(Route { upstream: Upstream::Remote(playlists), api: playlist::openapi() });
    }
    if let Some(url) = config.upstreams.get("ai") {
        let ai = RemoteService::new("ai", url, &policy)?;
        probes.push(Arc::new(UpstreamProbe(ai.clone())));
        routes.push(Route { upstream: Upstream::Remote(ai), api: ai::openapi() });
    }
    if let Some(url) = config.upstreams.get("people") {
        let people = RemoteService::new("people", url, &policy)?;
        probes.push(Arc::new(UpstreamProbe(people.clone())));
        routes.push(Route { upstream: Upstream::Remote(people), api: people::openapi() });
    }
    let mut media = None;
    let mut documents = vec![streaming::media_openapi()];
    if let Some(url) = config.upstreams.get("streaming") {
        let streaming = RemoteService::new("streaming", url, &policy)?;
        probes.push(Arc::new(UpstreamProbe(streaming.clone())));
        media = Some(MediaUpstream::Remote(streaming.clone()));
        routes.push(Route { upstream: Upstream::Remote(streaming), api: streaming::openapi() });
    } else {
        documents.clear();
    }
    let upload_limit = usize::try_from(settings.catalog.max_upload_bytes).unwrap_or(usize::MAX);
    let (router, request_events) = gateway::router(GatewayParts {
        internal_key: Some(key),
        config: config.clone(),
        directory,
        cache,
        api: public_api(routes.iter().map(|route| &route.api).chain(&documents)),
        routes,
        probes,
        route_body_limits: [("/v1/tracks".to_owned(), upload_limit)]
            .into_iter()
            .chain(audio_limits(&settings.ai))
            .collect(),
        media,
        request_events: Some(bus),
    });
    Ok((router, request_events.into_iter().collect()))
}

/// The public API document: every service's paths, the operations endpoints, and the
/// bearer scheme protected paths refer to.
pub fn public_api<'a>(services: impl IntoIterator<Item = &'a OpenApi>) -> OpenApi {
    let mut document = kernel::http::ops_openapi();
    document.info.title = "Tonearm".to_owned();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document.info.description = Some(
        "The Tonearm music streaming API. Every endpoint is served by the gateway; see \
         shared/API.md for conventions (errors are application/problem+json)."
            .to_owned(),
    );
    let mut schemas: std::collections::BTreeMap<String, (String, serde_json::Value)> =
        std::collections::BTreeMap::new();
    for service in services {
        // Two services naming different schemas alike would leave one of them pointing at
        // the other's: the merged document keeps only one per name.
        let title = service.info.title.clone();
        for (name, schema) in service.components.iter().flat_map(|c| c.schemas.iter()) {
            let shape = serde_json::to_value(schema).unwrap_or_default();
            if let Some((first, known)) = schemas.get(name) {
                assert!(
                    *known == shape,
                    "the schema `{name}` of {title} differs from {first}'s: rename one"
                );
            }
            schemas.insert(name.clone(), (title.clone(), shape));
        }
        document.merge(service.clone());
    }
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
        ),
    );
    document
}

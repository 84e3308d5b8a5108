//! Recommendation serving over HTTP: seeds the AI service's store (SQLite in a temporary
//! directory, or the PostgreSQL URL given) with a catalog of tracks, each with a
//! 384-number embedding near its genre's, and the listening of listeners with planted
//! tastes; loads and trains the service as it starts; then serves its routes on a local
//! port and times, at a fixed concurrency, a listener's precomputed list, a list computed
//! per request (fold-in and scoring), and similar tracks. Requests carry the identity the
//! gateway would forward, so this is the service's own share of a request.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ai::{
    AiConfig, Recommendations,
    recommend::eval::PlantedTastes,
    store::{Listened, StoredTrack},
};
use chrono::{TimeDelta, Utc};
use kernel::{
    api::{AlbumRef, ArtistRef, TrackSummary},
    caller,
    db::SqlPool,
    engine::EngineUrl,
};
use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
use uuid::Uuid;

use crate::drive::drive;

pub struct RecommendationsArgs {
    pub users: usize,
    pub items: usize,
    pub per_user: usize,
    pub concurrency: usize,
    pub seconds: u64,
    pub database: Option<String>,
}

/// Answers that no track is ready: the seeded store has them all.
struct NoCatalog;

#[async_trait::async_trait]
impl kernel::catalog::Catalog for NoCatalog {
    async fn ready_tracks(
        &self,
        _caller: &caller::Caller,
        _ids: &[Uuid],
    ) -> Result<Vec<TrackSummary>, String> {
        Ok(Vec::new())
    }
}

const DIM: usize = ai::recommendations::EMBEDDING_DIM;

/// Picks a request: the listener it is sent as, and the URL.
type Pick = Arc<dyn Fn(&mut StdRng) -> (Uuid, String) + Send + Sync>;
const GENRES: usize = 20;

pub async fn run(args: RecommendationsArgs) -> anyhow::Result<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut lines = vec![format!("recommendation serving, {threads} cores")];
    let dir = tempfile::tempdir()?;
    let url = args
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("ai.db").display()));
    let pool = SqlPool::connect(&EngineUrl::new(url), "tonearm_ai_bench").await?;
    let store = ai::store::open(pool).await?;

    let (users, items, per_user) = (args.users, args.items, args.per_user);
    let dataset = tokio::task::spawn_blocking(move || {
        PlantedTastes { users, items, clusters: GENRES, per_user, ..Default::default() }.generate()
    })
    .await?;
    let started = Instant::now();
    let track_ids: Vec<Uuid> = (0..items).map(|_| Uuid::now_v7()).collect();
    let mut rng = StdRng::seed_from_u64(11);
    let now = Utc::now();
    for (index, id) in track_ids.iter().enumerate() {
        let genre = dataset.cluster_of_item[index] as usize;
        let mut embedding: Vec<f32> = (0..DIM).map(|_| rng.r#gen::<f32>() * 0.1).collect();
        embedding[genre % DIM] += 1.0;
        let norm = embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        let track = StoredTrack {
            summary: TrackSummary {
                id: *id,
                title: format!("Track {index}"),
                artist: ArtistRef { id: Uuid::nil(), name: format!("Artist {}", index % 997) },
                album: AlbumRef { id: Uuid::nil(), title: format!("Album {}", index % 4999) },
                duration_ms: 180_000,
            },
            genre: Some(format!("Genre {genre}")),
            embedding: Some(embedding.into_iter().map(|x| x / norm).collect()),
            published_at: now,
        };
        store.apply_published("bench", Uuid::now_v7(), &track).await?;
    }
    let user_ids: Vec<Uuid> = (0..users).map(|_| Uuid::now_v7()).collect();
    let events: Vec<(Uuid, Listened)> = dataset
        .feedback
        .iter()
        .map(|(user, item, confidence)| {
            let listened = Listened::Played {
                user_id: user_ids[*user as usize],
                track_id: track_ids[*item as usize],
                completion: f64::from(confidence - 1.0),
                at: now - TimeDelta::days(30),
            };
            (Uuid::now_v7(), listened)
        })
        .collect();
    for chunk in events.chunks(5_000) {
        store.apply_listening("bench", chunk).await?;
    }
    lines.push(format!(
        "seeded {} tracks and {} listeners' {} plays in {:.0} s",
        items,
        users,
        events.len(),
        started.elapsed().as_secs_f64()
    ));
    // The last tenth of the listeners were active lately: theirs are precomputed.
    let active = &user_ids[users - users / 10..];
    for user_id in active {
        let track_id = track_ids[rng.gen_range(0..items)];
        let liked = Listened::Liked { user_id: *user_id, track_id, liked: true, at: now };
        store.apply_listening("bench", &[(Uuid::now_v7(), liked)]).await?;
    }

    let config = AiConfig {
        models_dir: Some(dir.path().join("no-models")),
        precomputed_listeners: u32::try_from(active.len())?,
        retrain_interval_secs: 24 * 3600,
        ..AiConfig::default()
    };
    let cache = kernel::cache::connect("bench", &EngineUrl::new("memory://?max_mib=512")).await?;
    let service = Arc::new(Recommendations::new(config, store, cache, Arc::new(NoCatalog)));
    let started = Instant::now();
    service.load().await;
    lines.push(format!(
        "started in {:.1} s: tracks read, factors trained, {} lists precomputed, index built",
        started.elapsed().as_secs_f64(),
        active.len()
    ));

    let (router, _) = ai::recommendations_router(service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, kernel::http::observe(router)).await });
    let base = format!("http://{addr}");
    let active = Arc::new(active.to_vec());
    let everyone = Arc::new(user_ids);
    let tracks = Arc::new(track_ids);
    let measure = Duration::from_secs(args.seconds);
    let phases: [(&str, Pick); 3] = [
        ("precomputed list", {
            let (active, base) = (active.clone(), base.clone());
            Arc::new(move |rng: &mut StdRng| {
                let user = active[rng.gen_range(0..active.len())];
                (user, format!("{base}/v1/me/recommendations"))
            })
        }),
        ("list computed per request", {
            let (everyone, base) = (everyone.clone(), base.clone());
            Arc::new(move |rng: &mut StdRng| {
                let user = everyone[rng.gen_range(0..everyone.len())];
                (user, format!("{base}/v1/me/recommendations?include_known=true"))
            })
        }),
        ("similar tracks", {
            let (everyone, tracks, base) = (everyone.clone(), tracks.clone(), base.clone());
            Arc::new(move |rng: &mut StdRng| {
                let user = everyone[rng.gen_range(0..everyone.len())];
                let track = tracks[rng.gen_range(0..tracks.len())];
                (user, format!("{base}/v1/tracks/{track}/similar"))
            })
        }),
    ];
    for (name, request) in phases {
        lines.push(format!("{name}: {}", load(request, args.concurrency, measure).await?));
    }
    Ok(lines.join("\n"))
}

/// Sends what `request` picks from `concurrency` clients for `measure` (after a second's
/// warm-up); throughput and latency percentiles.
async fn load(request: Pick, concurrency: usize, measure: Duration) -> anyhow::Result<String> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build()?;
    let warm_up = Duration::from_secs(1);
    let (histogram, failures) = drive(concurrency, warm_up, measure, |worker| {
        let mut rng = StdRng::seed_from_u64(worker as u64);
        let (client, request) = (client.clone(), request.clone());
        move || {
            let (user, url) = request(&mut rng);
            client
                .get(url)
                .header(caller::USER_ID, user.to_string())
                .header(caller::SESSION_ID, Uuid::nil().to_string())
                .header(caller::TIER, "free")
                .header(caller::ROLE, "user")
        }
    })
    .await?;
    let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    Ok(format!(
        "{concurrency} clients: {:.0} req/s, {failures} failed, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        histogram.len() as f64 / measure.as_secs_f64(),
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    ))
}

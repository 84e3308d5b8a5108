//! Recommendations as a service: what the [`recommend`](crate::recommend) algorithms are
//! fed from the store, and when. Tracks and listening arrive by events into the store;
//! the model in memory (every track's embedding and the trained factors) is loaded from
//! it at start, gains each published track at once, and has its factors retrained on a
//! schedule. A listener's own latest listening is read per request and folded in, so a
//! like counts within a second, without a retrain. Each active listener's list is
//! precomputed after a retrain and cached until their listening or the model changes.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, OnceLock, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};
use kernel::{
    api::TrackSummary, background::Background, cache::Cache, caller::Caller, catalog::Catalog,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    config::AiConfig,
    models,
    recommend::{
        als::{AlsConfig, Factors, Sparse, train},
        embed::{Embedder, track_text},
        recommender::{Feedback, Reason, Recommender},
        similar::SimilarIndex,
    },
    service::ModelState,
    store::{AiStore, Listening, StoreError, StoredTrack},
};

/// The dimensions of a MiniLM embedding.
pub const EMBEDDING_DIM: usize = 384;
/// How many recommendations (or similar tracks) are computed and paged through at most.
pub const MAX_RESULTS: usize = 100;
/// A like counts as this many complete plays.
const LIKE_WEIGHT: f32 = 4.0;
/// Fewer listeners than this teach the factors nothing: content and popularity serve.
const MIN_LISTENERS_TO_TRAIN: usize = 3;
/// Texts embedded in one forward pass.
const EMBED_BATCH: usize = 32;
/// How long a precomputed list is kept; it is replaced or invalidated long before.
const CACHED_FOR: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    #[error("recommendations are loading; try again shortly")]
    Loading,
    #[error("no such track")]
    NoSuchTrack,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the catalog is unavailable: {0}")]
    CatalogUnavailable(String),
    #[error("computing recommendations failed: {0}")]
    Failed(String),
}

/// One recommended track.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommended {
    pub track: TrackSummary,
    pub score: f32,
    /// Why, said to the listener: "Because you liked Blue in Green by Miles Davis".
    pub reason: String,
}

/// A cached list: valid while the model and the listener's listening are as they were,
/// and, when it was short for want of tracks, while no track has been added.
#[derive(Debug, Serialize, Deserialize)]
struct CachedList {
    model: u64,
    revision: u64,
    #[serde(default)]
    tracks: usize,
    items: Vec<(Uuid, f32, String)>,
}

/// The tracks known, by dense index, with the algorithms' state over them.
struct Model {
    ids: Vec<Uuid>,
    index_of: HashMap<Uuid, u32>,
    /// `None` once deleted: a deleted track keeps its index but is never shown.
    tracks: Vec<Option<StoredTrack>>,
    recommender: Recommender,
    /// Bumped by each retrain and each embedding computed late, so that cached lists
    /// made before are not served.
    stamp: u64,
}

impl Model {
    fn empty() -> Self {
        Self {
            ids: Vec::new(),
            index_of: HashMap::new(),
            tracks: Vec::new(),
            recommender: Recommender::new(&[], EMBEDDING_DIM, None, Vec::new()),
            stamp: 1,
        }
    }

    /// Adds the track, or takes its new metadata and embedding.
    fn upsert(&mut self, track: StoredTrack) {
        match self.index_of.get(&track.summary.id) {
            Some(&index) => {
                if let Some(embedding) = &track.embedding {
                    let current = self.tracks[index as usize].as_ref();
                    if current.and_then(|t| t.embedding.as_ref()) != Some(embedding) {
                        self.recommender.set_embedding(index, embedding);
                    }
                }
                self.tracks[index as usize] = Some(track);
            }
            None => {
                let index = self.recommender.add_track(track.embedding.as_deref());
                self.ids.push(track.summary.id);
                self.index_of.insert(track.summary.id, index);
                self.tracks.push(Some(track));
            }
        }
    }

    fn remove(&mut self, id: Uuid) {
        if let Some(&index) = self.index_of.get(&id) {
            self.tracks[index as usize] = None;
        }
    }

    fn summary(&self, index: u32) -> Option<&TrackSummary> {
        self.tracks.get(index as usize)?.as_ref().map(|track| &track.summary)
    }

    /// A listener's listening as the recommender takes it; tracks unknown here are left
    /// out.
    fn feedback(&self, listening: &[Listening], recent_since: DateTime<Utc>) -> Vec<Feedback> {
        listening
            .iter()
            .filter_map(|row| {
                let track = *self.index_of.get(&row.track_id)?;
                let confidence = confidence(row)?;
                Some(Feedback {
                    track,
                    confidence,
                    liked: row.liked,
                    recent: row.last_played_at.is_some_and(|at| at >= recent_since),
                })
            })
            .collect()
    }

    fn reason(&self, reason: Reason) -> String {
        let named = |index: u32| {
            self.summary(index).map(|track| format!("{} by {}", track.title, track.artist.name))
        };
        match reason {
            Reason::Liked(index) => named(index).map(|track| format!("Because you liked {track}")),
            Reason::Played(index) => {
                named(index).map(|track| format!("Because you played {track}"))
            }
            Reason::Popular => None,
        }
        .unwrap_or_else(|| "Popular on Tonearm".to_owned())
    }
}

/// How strongly a listener's row counts: 1 plus the completed plays, more for a like;
/// `None` when nothing is left of it (a like taken back, no plays).
fn confidence(row: &Listening) -> Option<f32> {
    let weight = row.play_weight as f32 + if row.liked { LIKE_WEIGHT } else { 0.0 };
    (weight > 0.0).then_some(1.0 + weight)
}

/// How much of a track a play covered, 0 to 1.
pub fn completion(played_ms: u64, duration_ms: u64, stream: bool) -> f64 {
    if duration_ms == 0 {
        return if stream { 1.0 } else { 0.5 };
    }
    (played_ms as f64 / duration_ms as f64).clamp(0.0, 1.0)
}

pub struct Recommendations {
    config: AiConfig,
    store: Arc<dyn AiStore>,
    cache: Arc<dyn Cache>,
    catalog: Arc<dyn Catalog>,
    embedder: OnceLock<ModelState<Arc<Embedder>>>,
    /// Tracks published while the store is being read join it here, so none is missed.
    model: RwLock<Model>,
    /// Whether the store has been read into the model: until then requests get 503.
    loaded: AtomicBool,
    /// The listening version the factors were last trained on.
    trained_on: std::sync::Mutex<Option<i64>>,
}

impl Recommendations {
    pub fn new(
        config: AiConfig,
        store: Arc<dyn AiStore>,
        cache: Arc<dyn Cache>,
        catalog: Arc<dyn Catalog>,
    ) -> Self {
        Self {
            config,
            store,
            cache,
            catalog,
            embedder: OnceLock::new(),
            model: RwLock::new(Model::empty()),
            loaded: AtomicBool::new(false),
            trained_on: std::sync::Mutex::new(None),
        }
    }

    pub fn store(&self) -> &Arc<dyn AiStore> {
        &self.store
    }

    fn embedder_dir(&self) -> PathBuf {
        self.config.models_dir().join(models::MINILM.dir)
    }

    /// Whether track embeddings are computed, and why not.
    pub fn embedder_state(&self) -> Result<(), String> {
        match self.embedder.get() {
            Some(ModelState::Ready(_)) => Ok(()),
            Some(ModelState::Missing(why) | ModelState::Failed(why)) => Err(why.clone()),
            Some(ModelState::Loading) | None => Err("loading".into()),
        }
    }

    fn embedder(&self) -> Option<Arc<Embedder>> {
        match self.embedder.get() {
            Some(ModelState::Ready(embedder)) => Some(embedder.clone()),
            _ => None,
        }
    }

    fn open_embedder(&self) -> ModelState<Arc<Embedder>> {
        let dir = self.embedder_dir();
        if !dir.join("model.safetensors").is_file() {
            return ModelState::Missing(format!(
                "no embedding model at {}; run `{}`",
                dir.display(),
                models::FETCH_COMMAND
            ));
        }
        match Embedder::load(&dir, &candle_core::Device::Cpu) {
            Ok(embedder) => {
                tracing::info!(model = %dir.display(), "track embeddings ready");
                ModelState::Ready(Arc::new(embedder))
            }
            Err(error) => {
                tracing::error!(%error, model = %dir.display(), "the embedding model did not load");
                ModelState::Failed(format!("the embedding model did not load: {error}"))
            }
        }
    }

    /// Loads the model from the store, trains the factors, embeds the tracks that have no
    /// embedding yet, builds the neighbour index and precomputes the active listeners'
    /// lists, in that order, so that recommendations are served (by brute force at first)
    /// as soon as the tracks are in memory, and the lists are ranked with the index.
    /// Failures are logged and retried at the next scheduled retrain.
    pub async fn load(self: &Arc<Self>) {
        let service = self.clone();
        let embedder = tokio::task::spawn_blocking(move || {
            service.embedder.get_or_init(|| service.open_embedder());
        });
        // Retried until the store answers: nothing is served before.
        let mut pause = Duration::from_millis(200);
        loop {
            match self.store.tracks().await {
                Ok(tracks) => {
                    let count = tracks.len();
                    self.apply_tracks(tracks);
                    self.loaded.store(true, Ordering::Release);
                    tracing::info!(tracks = count, "recommendations loaded");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot load tracks for recommendations; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
        if let Err(error) = embedder.await {
            tracing::error!(%error, "loading the embedding model panicked");
        }
        let trained = self.retrain().await.unwrap_or_else(|error| {
            tracing::warn!(%error, "training recommendations failed");
            false
        });
        if let Err(error) = self.embed_missing().await {
            tracing::warn!(%error, "embedding tracks failed");
        }
        self.build_index().await;
        if trained {
            self.precompute().await;
        }
    }

    /// Loads in the background, then retrains every `retrain_interval_secs` when the
    /// listening has changed.
    pub fn spawn_schedule(self: &Arc<Self>) -> Background {
        let service = self.clone();
        Background::spawn(move |stop| async move {
            let work = async {
                service.load().await;
                let every = Duration::from_secs(service.config.retrain_interval_secs.max(1));
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let trained = service.retrain().await.unwrap_or_else(|error| {
                        tracing::warn!(%error, "retraining recommendations failed");
                        false
                    });
                    if let Err(error) = service.embed_missing().await {
                        tracing::warn!(%error, "embedding tracks failed");
                    }
                    if trained {
                        service.precompute().await;
                    }
                }
            };
            tokio::select! {
                () = work => {}
                () = stop => {}
            }
        })
    }

    /// Trains the factors on everyone's listening and installs them; false when the
    /// listening has not changed since the last time, and nothing was done.
    async fn retrain(self: &Arc<Self>) -> Result<bool, RecommendError> {
        let version = self.store.listening_version().await?;
        if *self.trained_on.lock().unwrap_or_else(|e| e.into_inner()) == Some(version) {
            return Ok(false);
        }
        let listening = self.store.listening().await?;
        let service = self.clone();
        let started = std::time::Instant::now();
        let trained = tokio::task::spawn_blocking(move || service.train(&listening))
            .await
            .map_err(|error| RecommendError::Failed(error.to_string()))?;
        let Some((factors, popularity, tracks)) = trained else {
            return Err(RecommendError::Loading);
        };
        {
            let mut model = self.model.write().unwrap_or_else(|e| e.into_inner());
            let trained = factors.is_some();
            model.recommender.set_factors(factors, popularity);
            model.stamp += 1;
            let seconds = started.elapsed().as_secs_f64();
            metrics::histogram!("ai_recommendations_train_seconds").record(seconds);
            metrics::gauge!("ai_recommendations_tracks").set(tracks as f64);
            tracing::info!(tracks, trained, seconds, "recommendations retrained");
        }
        *self.trained_on.lock().unwrap_or_else(|e| e.into_inner()) = Some(version);
        Ok(true)
    }

    /// Factors and popularity from `listening` over the tracks in memory now; `None`
    /// before the store has been read.
    #[allow(clippy::type_complexity)]
    fn train(&self, listening: &[Listening]) -> Option<(Option<Factors>, Vec<f32>, usize)> {
        if !self.loaded.load(Ordering::Acquire) {
            return None;
        }
        let (index_of, tracks) = {
            let model = self.model.read().unwrap_or_else(|e| e.into_inner());
            (model.index_of.clone(), model.ids.len())
        };
        let mut users: HashMap<Uuid, u32> = HashMap::new();
        let mut triples = Vec::with_capacity(listening.len());
        let mut popularity = vec![0f32; tracks];
        for row in listening {
            let (Some(&track), Some(confidence)) = (index_of.get(&row.track_id), confidence(row))
            else {
                continue;
            };
            let next = users.len() as u32;
            let user = *users.entry(row.user_id).or_insert(next);
            triples.push((user, track, confidence));
            popularity[track as usize] += 1.0;
        }
        let factors = (users.len() >= MIN_LISTENERS_TO_TRAIN).then(|| {
            let matrix = Sparse::from_triples(users.len(), tracks, &triples);
            let config = AlsConfig {
                factors: self.config.factors,
                iterations: self.config.iterations,
                ..AlsConfig::default()
            };
            train(&matrix, &config)
        });
        Some((factors, popularity, tracks))
    }

    /// Computes and caches the lists of the listeners active lately.
    async fn precompute(self: &Arc<Self>) {
        let since = Utc::now() - TimeDelta::days(i64::from(self.config.active_days));
        let listeners =
            match self.store.active_listeners(since, self.config.precomputed_listeners).await {
                Ok(listeners) => listeners,
                Err(error) => {
                    tracing::warn!(%error, "cannot list active listeners");
                    return;
                }
            };
        let count = listeners.len();
        for user_id in listeners {
            let fresh = match self.store.revision_of(user_id).await {
                Ok(revision) => self.fresh_list(user_id, revision).await,
                Err(error) => Err(error.into()),
            };
            if let Err(error) = fresh {
                tracing::warn!(%error, %user_id, "precomputing recommendations failed");
                return;
            }
        }
        tracing::info!(listeners = count, "recommendations precomputed");
    }

    /// Embeds the tracks that have none yet (they arrived before the model did).
    async fn embed_missing(self: &Arc<Self>) -> Result<(), RecommendError> {
        let Some(embedder) = self.embedder() else { return Ok(()) };
        loop {
            let tracks = self.store.unembedded(EMBED_BATCH as u32).await?;
            if tracks.is_empty() {
                return Ok(());
            }
            let embedded = embed(&embedder, tracks).await?;
            let pairs: Vec<(Uuid, Vec<f32>)> = embedded
                .iter()
                .filter_map(|t| t.embedding.clone().map(|e| (t.summary.id, e)))
                .collect();
            self.store.set_embeddings(&pairs).await?;
            self.apply_tracks(embedded);
            if pairs.len() < EMBED_BATCH {
                return Ok(());
            }
        }
    }

    /// Builds the neighbour index from the embeddings in memory, apart from the model so
    /// that serving goes on meanwhile, then installs it with the tracks added since.
    async fn build_index(self: &Arc<Self>) {
        let snapshot = {
            let model = self.model.read().unwrap_or_else(|e| e.into_inner());
            if model.recommender.has_index() {
                return;
            }
            model.recommender.embeddings().clone()
        };
        let covered = snapshot.len();
        let built = tokio::task::spawn_blocking(move || SimilarIndex::build(&snapshot)).await;
        match built {
            Ok(index) => {
                let mut model = self.model.write().unwrap_or_else(|e| e.into_inner());
                model.recommender.install_index(index, covered);
                tracing::info!(tracks = covered, "similar-track index built");
            }
            Err(error) => tracing::error!(%error, "building the similar-track index panicked"),
        }
    }

    /// Embeds `tracks` (when the model is loaded) and records them, each once per event.
    pub async fn publish(
        self: &Arc<Self>,
        consumer: &str,
        tracks: Vec<(Uuid, StoredTrack)>,
    ) -> Result<(), RecommendError> {
        let (event_ids, tracks): (Vec<Uuid>, Vec<StoredTrack>) = tracks.into_iter().unzip();
        let embedder = self.embedder();
        let tracks = match &embedder {
            Some(embedder) => embed(embedder, tracks).await?,
            None => tracks,
        };
        for (event_id, track) in event_ids.iter().zip(&tracks) {
            self.store.apply_published(consumer, *event_id, track).await?;
        }
        self.apply_tracks(tracks);
        // The model finished loading meanwhile: what was stored without an embedding
        // gets one now rather than at the next retrain.
        if embedder.is_none() && self.embedder().is_some() {
            self.embed_missing().await?;
        }
        Ok(())
    }

    /// Takes tracks into the model in memory (new, or with new metadata).
    pub fn apply_tracks(&self, tracks: Vec<StoredTrack>) {
        let mut model = self.model.write().unwrap_or_else(|e| e.into_inner());
        let late_embeddings = tracks.iter().any(|track| {
            model.index_of.contains_key(&track.summary.id) && track.embedding.is_some()
        });
        for track in tracks {
            model.upsert(track);
        }
        if late_embeddings {
            model.stamp += 1;
        }
    }

    /// Takes a published track into this replica's model as the store has it (recorded,
    /// with its embedding, by whichever replica handled the event), or as `published`
    /// says when the store has not caught up, embedded here.
    pub async fn refresh_published(&self, published: StoredTrack) -> Result<(), RecommendError> {
        let track = match self.store.track(published.summary.id).await? {
            Some(stored) if stored.published_at >= published.published_at => stored,
            _ => match self.embedder() {
                Some(embedder) => embed(&embedder, vec![published]).await?.remove(0),
                None => published,
            },
        };
        self.apply_tracks(vec![track]);
        Ok(())
    }

    /// Forgets what a deleted account did, and its cached list.
    pub async fn forget_user(&self, event_id: Uuid, user_id: Uuid) -> Result<(), RecommendError> {
        self.store.forget_user(crate::events::USERS_GROUP, event_id, user_id).await?;
        if let Err(error) = self.cache.delete(&[Self::cache_key(user_id)]).await {
            tracing::warn!(%error, "cannot drop cached recommendations");
        }
        Ok(())
    }

    /// Stops showing a deleted track.
    pub fn forget_track(&self, track_id: Uuid) {
        self.model.write().unwrap_or_else(|e| e.into_inner()).remove(track_id);
    }

    fn recent_since(&self) -> DateTime<Utc> {
        Utc::now() - TimeDelta::days(i64::from(self.config.recently_played_days))
    }

    fn cache_key(user_id: Uuid) -> String {
        format!("ai:recommendations:{user_id}")
    }

    /// The listener's recommendations, best first, at most [`MAX_RESULTS`]: from the
    /// cache while their listening and the model are unchanged, else computed now.
    pub async fn recommend(
        self: &Arc<Self>,
        user_id: Uuid,
        include_known: bool,
    ) -> Result<Vec<Recommended>, RecommendError> {
        self.ensure_loaded()?;
        if include_known {
            let listening = self.store.listening_of(user_id).await?;
            return self.compute(listening, true).await.map(|(_, _, list)| list);
        }
        let revision = self.store.revision_of(user_id).await?;
        if let Some(list) = self.cached(user_id, revision).await {
            metrics::counter!("ai_recommendations_served_total", "from" => "cache").increment(1);
            return Ok(list);
        }
        metrics::counter!("ai_recommendations_served_total", "from" => "computed").increment(1);
        self.fresh_list(user_id, revision).await
    }

    /// Computes a listener's list and caches it under `revision`, which must have been
    /// read before their listening: a change after it makes the cached list stale, never a
    /// stale list look fresh.
    async fn fresh_list(
        self: &Arc<Self>,
        user_id: Uuid,
        revision: u64,
    ) -> Result<Vec<Recommended>, RecommendError> {
        let listening = self.store.listening_of(user_id).await?;
        let (stamp, tracks, list) = self.compute(listening, false).await?;
        let cached = CachedList {
            model: stamp,
            revision,
            tracks,
            items: list.iter().map(|r| (r.track.id, r.score, r.reason.clone())).collect(),
        };
        match serde_json::to_string(&cached) {
            Ok(value) => {
                if let Err(error) =
                    self.cache.set(&Self::cache_key(user_id), &value, CACHED_FOR).await
                {
                    tracing::warn!(%error, "cannot cache recommendations");
                }
            }
            Err(error) => tracing::warn!(%error, "cannot encode recommendations"),
        }
        Ok(list)
    }

    async fn cached(&self, user_id: Uuid, revision: u64) -> Option<Vec<Recommended>> {
        let value = match self.cache.get(&Self::cache_key(user_id)).await {
            Ok(value) => value?,
            Err(error) => {
                tracing::warn!(%error, "the recommendations cache is unavailable");
                return None;
            }
        };
        let cached: CachedList = serde_json::from_str(&value).ok()?;
        let model = self.model.read().unwrap_or_else(|e| e.into_inner());
        let short = cached.items.len() < MAX_RESULTS && cached.tracks != model.ids.len();
        if cached.model != model.stamp || cached.revision != revision || short {
            return None;
        }
        Some(
            cached
                .items
                .into_iter()
                .filter_map(|(id, score, reason)| {
                    let summary = model.summary(*model.index_of.get(&id)?)?;
                    Some(Recommended { track: summary.clone(), score, reason })
                })
                .collect(),
        )
    }

    async fn compute(
        self: &Arc<Self>,
        listening: Vec<Listening>,
        include_known: bool,
    ) -> Result<(u64, usize, Vec<Recommended>), RecommendError> {
        let service = self.clone();
        let recent_since = self.recent_since();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let model = service.model.read().unwrap_or_else(|e| e.into_inner());
            let feedback = model.feedback(&listening, recent_since);
            // Deleted tracks are dropped after ranking, so ask for a few more.
            let ranked = model.recommender.recommend(&feedback, MAX_RESULTS + 16, include_known);
            let list = ranked
                .into_iter()
                .filter_map(|r| {
                    Some(Recommended {
                        track: model.summary(r.track)?.clone(),
                        score: r.score,
                        reason: model.reason(r.reason),
                    })
                })
                .take(MAX_RESULTS)
                .collect();
            metrics::histogram!("ai_recommendations_compute_seconds")
                .record(started.elapsed().as_secs_f64());
            Ok((model.stamp, model.ids.len(), list))
        })
        .await
        .map_err(|error| RecommendError::Failed(error.to_string()))?
    }

    /// The tracks most like `track_id`, best first, at most [`MAX_RESULTS`]. A track the
    /// catalog has published but whose event has not arrived here yet is asked for.
    pub async fn similar(
        self: &Arc<Self>,
        caller: &Caller,
        track_id: Uuid,
    ) -> Result<Vec<(TrackSummary, f32)>, RecommendError> {
        self.ensure_loaded()?;
        if !self.knows(track_id) {
            self.learn(caller, track_id).await?;
        }
        let service = self.clone();
        tokio::task::spawn_blocking(move || {
            let model = service.model.read().unwrap_or_else(|e| e.into_inner());
            let index = *model.index_of.get(&track_id).ok_or(RecommendError::NoSuchTrack)?;
            model.summary(index).ok_or(RecommendError::NoSuchTrack)?;
            Ok(model
                .recommender
                .similar(index, MAX_RESULTS + 16)
                .into_iter()
                .filter_map(|(other, score)| Some((model.summary(other)?.clone(), score)))
                .take(MAX_RESULTS)
                .collect())
        })
        .await
        .map_err(|error| RecommendError::Failed(error.to_string()))?
    }

    /// Whether the model has the track (deleted or not).
    fn knows(&self, track_id: Uuid) -> bool {
        self.model.read().unwrap_or_else(|e| e.into_inner()).index_of.contains_key(&track_id)
    }

    fn ensure_loaded(&self) -> Result<(), RecommendError> {
        if self.loaded.load(Ordering::Acquire) { Ok(()) } else { Err(RecommendError::Loading) }
    }

    /// Takes in a track this replica has not seen: from the store if another replica
    /// recorded it, else from the catalog (embedded now; its event records it later).
    async fn learn(&self, caller: &Caller, track_id: Uuid) -> Result<(), RecommendError> {
        if let Some(track) = self.store.track(track_id).await? {
            self.apply_tracks(vec![track]);
            return Ok(());
        }
        let ready = self
            .catalog
            .ready_tracks(caller, &[track_id])
            .await
            .map_err(RecommendError::CatalogUnavailable)?;
        let Some(summary) = ready.into_iter().find(|track| track.id == track_id) else {
            return Err(RecommendError::NoSuchTrack);
        };
        let track = StoredTrack { summary, genre: None, embedding: None, published_at: Utc::now() };
        let tracks = match self.embedder() {
            Some(embedder) => embed(&embedder, vec![track]).await?,
            None => vec![track],
        };
        self.apply_tracks(tracks);
        Ok(())
    }
}

/// Gives each track its embedding, computed on a blocking thread in batches.
async fn embed(
    embedder: &Arc<Embedder>,
    mut tracks: Vec<StoredTrack>,
) -> Result<Vec<StoredTrack>, RecommendError> {
    let embedder = embedder.clone();
    tokio::task::spawn_blocking(move || {
        for batch in tracks.chunks_mut(EMBED_BATCH) {
            let texts: Vec<String> = batch
                .iter()
                .map(|track| {
                    let summary = &track.summary;
                    track_text(
                        &summary.title,
                        &summary.artist.name,
                        &summary.album.title,
                        track.genre.as_deref(),
                    )
                })
                .collect();
            let embeddings = embedder
                .embed(&texts)
                .map_err(|error| RecommendError::Failed(error.to_string()))?;
            for (track, embedding) in batch.iter_mut().zip(embeddings) {
                track.embedding = Some(embedding);
            }
        }
        Ok(tracks)
    })
    .await
    .map_err(|error| RecommendError::Failed(error.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_is_the_fraction_played() {
        assert_eq!(completion(90_000, 180_000, true), 0.5);
        assert_eq!(completion(200_000, 180_000, true), 1.0, "a replayed stretch counts once");
        assert_eq!(completion(0, 180_000, false), 0.0);
        assert_eq!(completion(5_000, 0, false), 0.5, "no duration known");
    }

    #[test]
    fn a_like_taken_back_with_no_plays_counts_for_nothing() {
        let row = Listening {
            user_id: Uuid::now_v7(),
            track_id: Uuid::now_v7(),
            plays: 0,
            play_weight: 0.0,
            liked: false,
            last_played_at: None,
        };
        assert_eq!(confidence(&row), None);
        assert_eq!(confidence(&Listening { liked: true, ..row }), Some(1.0 + LIKE_WEIGHT));
        assert_eq!(confidence(&Listening { play_weight: 1.5, ..row }), Some(2.5));
    }
}

//! The analytics service's operations: accepting plays, and the questions the warehouse
//! answers, with track summaries joined from the projection.

use std::{collections::HashMap, sync::Arc};

use bus::{Envelope, events::SongPlayed};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use kernel::{api::TrackSummary, caller::Caller, catalog::Catalog};
use uuid::Uuid;

use crate::{
    config::AnalyticsConfig,
    domain::{
        ActivePoint, ActivityFact, Bucketing, HistoryEntry, Interval, Period, PlayError, PlayFact,
        PlayPoint, PlayReport, RequestFact, RouteStats, Window, buckets,
        plays::MAX_PLAYS_PER_REQUEST, validate_play,
    },
    store::{AnalyticsStore, StoreError},
    warehouse::{Warehouse, WarehouseError},
};

/// The consumer name under which projected catalog events are recorded.
pub const PROJECTION_CONSUMER: &str = "analytics.tracks";

/// The most buckets one series answers.
pub const MAX_BUCKETS: i64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("{0}")]
    Invalid(String),
    #[error("unknown tracks: {}", list(.0))]
    UnknownTracks(Vec<Uuid>),
    #[error("only administrators may see this")]
    AdminOnly,
    #[error("the catalog is unavailable: {0}")]
    CatalogUnavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

fn list(ids: &[Uuid]) -> String {
    ids.iter().map(Uuid::to_string).collect::<Vec<_>>().join(", ")
}

/// A track with its counts over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankedTrack {
    pub track: TrackSummary,
    pub plays: u64,
    pub streams: u64,
    pub listeners: u64,
}

/// A play in a user's history, with its track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayedTrack {
    pub track: TrackSummary,
    pub played_at: DateTime<Utc>,
    pub played_ms: u64,
}

fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(now)
}

pub struct AnalyticsService {
    store: Arc<dyn AnalyticsStore>,
    warehouse: Arc<dyn Warehouse>,
    catalog: Arc<dyn Catalog>,
    config: AnalyticsConfig,
}

impl AnalyticsService {
    pub fn new(
        store: Arc<dyn AnalyticsStore>,
        warehouse: Arc<dyn Warehouse>,
        catalog: Arc<dyn Catalog>,
        config: AnalyticsConfig,
    ) -> Self {
        metrics::counter!("analytics_plays_ingested_total").increment(0);
        Self { store, warehouse, catalog, config }
    }

    pub fn store(&self) -> &Arc<dyn AnalyticsStore> {
        &self.store
    }

    pub fn warehouse(&self) -> &Arc<dyn Warehouse> {
        &self.warehouse
    }

    pub fn config(&self) -> &AnalyticsConfig {
        &self.config
    }

    /// Accepts the caller's plays, all or none: each must name a known track and fit its
    /// duration. Each accepted play is published as `song.played`; a play whose id was
    /// accepted before is skipped. Returns how many were new.
    pub async fn report_plays(
        &self,
        caller: &Caller,
        reports: &[PlayReport],
    ) -> Result<u64, AnalyticsError> {
        if reports.is_empty() {
            return Err(AnalyticsError::Invalid("no plays reported".into()));
        }
        if reports.len() > MAX_PLAYS_PER_REQUEST {
            return Err(AnalyticsError::Invalid(format!(
                "at most {MAX_PLAYS_PER_REQUEST} plays per request"
            )));
        }
        let ids: Vec<Uuid> = reports.iter().map(|report| report.track_id).collect();
        let tracks = self.known_tracks(caller, &ids).await?;
        let at = now();
        let mut accepted = Vec::with_capacity(reports.len());
        for (index, report) in reports.iter().enumerate() {
            let duration_ms = tracks.get(&report.track_id).map_or(0, |t| t.duration_ms);
            let fact = validate_play(report, caller.user_id, duration_ms, at).map_err(
                |error: PlayError| AnalyticsError::Invalid(format!("play {index}: {error}")),
            )?;
            let played = SongPlayed {
                play_id: fact.play_id,
                user_id: fact.user_id,
                track_id: fact.track_id,
                played_ms: fact.played_ms,
                duration_ms,
                stream: fact.stream,
                started_at: DateTime::from_timestamp_millis(fact.played_at_ms).unwrap_or(at),
                context: report.context.clone(),
            };
            accepted.push((fact.play_id, fact.user_id, Envelope::new(&played, at)));
        }
        Ok(self.store.accept_plays(&accepted, at).await?)
    }

    /// The caller's plays, newest first, and how many there are. Plays of deleted tracks
    /// are in neither (the warehouse has their tombstones); a play whose track the
    /// projection has not heard of is left out of the page.
    pub async fn history(
        &self,
        caller: &Caller,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<PlayedTrack>, u64), AnalyticsError> {
        let (entries, total) = self.warehouse.history(caller.user_id, limit, offset).await?;
        let ids: Vec<Uuid> = entries.iter().map(|entry| entry.track_id).collect();
        let tracks = self.summaries(&ids).await?;
        let items = entries
            .into_iter()
            .filter_map(|entry: HistoryEntry| {
                Some(PlayedTrack {
                    track: tracks.get(&entry.track_id)?.clone(),
                    played_at: DateTime::from_timestamp_millis(entry.played_at_ms)?,
                    played_ms: entry.played_ms,
                })
            })
            .collect();
        Ok((items, total))
    }

    /// The most played tracks over `window`, with the total of tracks played in it.
    /// Tracks deleted since are in neither (the warehouse has their tombstones); a track
    /// the projection has not heard of is left out of the page.
    pub async fn top_tracks(
        &self,
        window: Window,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<RankedTrack>, u64), AnalyticsError> {
        let from_ms = window.start_ms(now().timestamp_millis());
        let (ranked, total) = self.warehouse.top_tracks(from_ms, limit, offset).await?;
        let ids: Vec<Uuid> = ranked.iter().map(|entry| entry.track_id).collect();
        let tracks = self.summaries(&ids).await?;
        let items = ranked
            .into_iter()
            .filter_map(|entry| {
                Some(RankedTrack {
                    track: tracks.get(&entry.track_id)?.clone(),
                    plays: entry.plays,
                    streams: entry.streams,
                    listeners: entry.listeners,
                })
            })
            .collect();
        Ok((items, total))
    }

    /// Plays, streams and listeners per bucket over `[from, to]` (default: the last 24
    /// hours), every bucket listed, empty ones with zeros.
    pub async fn play_series(
        &self,
        interval: Interval,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<PlayPoint>, AnalyticsError> {
        let bucketing = Bucketing::from(interval);
        let (from_ms, to_ms) = range(bucketing, from, to, TimeDelta::hours(23))?;
        let sparse = self.warehouse.play_series(bucketing, from_ms, to_ms).await?;
        let starts = bucketing.starts(from_ms, to_ms);
        Ok(buckets::fill(
            &starts,
            &sparse,
            |p| p.t_ms,
            |t_ms| PlayPoint { t_ms, plays: 0, streams: 0, listeners: 0 },
        ))
    }

    /// Distinct active users per day, week or month over `[from, to]` (default: the last
    /// 30 days, 12 weeks or 12 months), every bucket listed. Administrators only.
    pub async fn active_users(
        &self,
        caller: &Caller,
        period: Period,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Vec<ActivePoint>, AnalyticsError> {
        admin(caller)?;
        let bucketing = Bucketing::from(period);
        let default_span = match period {
            Period::Day => TimeDelta::days(29),
            Period::Week => TimeDelta::weeks(11),
            Period::Month => TimeDelta::days(334),
        };
        let (from_ms, to_ms) = range(bucketing, from, to, default_span)?;
        let sparse = self.warehouse.active_users(bucketing, from_ms, to_ms).await?;
        let starts = bucketing.starts(from_ms, to_ms);
        Ok(buckets::fill(
            &starts,
            &sparse,
            |p| p.t_ms,
            |t_ms| ActivePoint { t_ms, active_users: 0 },
        ))
    }

    /// Requests, errors and latency per route over the last `hours`. Administrators only.
    pub async fn api_routes(
        &self,
        caller: &Caller,
        hours: i64,
    ) -> Result<Vec<RouteStats>, AnalyticsError> {
        admin(caller)?;
        let from = now() - TimeDelta::hours(hours);
        Ok(self.warehouse.api_routes(from.timestamp_millis()).await?)
    }

    /// Counts plays delivered as `song.played`; returns how many were new.
    pub async fn ingest_plays(&self, plays: &[PlayFact]) -> Result<u64, WarehouseError> {
        let mut new = 0;
        for chunk in plays.chunks(self.config.ingest_batch.max(1)) {
            let counted = self.warehouse.record_plays(chunk).await?;
            // New plays only: a redelivered batch adds nothing, as in the charts.
            metrics::counter!("analytics_plays_ingested_total").increment(counted);
            new += counted;
        }
        Ok(new)
    }

    pub async fn ingest_activity(&self, activity: &[ActivityFact]) -> Result<(), WarehouseError> {
        self.warehouse.record_activity(activity).await
    }

    pub async fn ingest_requests(
        &self,
        batch_id: Uuid,
        requests: &[RequestFact],
    ) -> Result<bool, WarehouseError> {
        self.warehouse.record_requests(batch_id, requests).await
    }

    pub async fn apply_published(
        &self,
        event_id: Uuid,
        summary: &TrackSummary,
    ) -> Result<(), StoreError> {
        self.store.apply_published(PROJECTION_CONSUMER, event_id, summary).await
    }

    /// Applies `track.deleted`: the warehouse tombstones the track, so that top tracks and
    /// histories neither list nor count it (their pages and totals agree), then its summary
    /// leaves the projection. The tombstone comes first and is not gated by the inbox: a
    /// redelivery, or a replay of the topic, writes it again harmlessly.
    pub async fn apply_deleted(
        &self,
        event_id: Uuid,
        track_id: Uuid,
    ) -> Result<(), AnalyticsError> {
        self.warehouse.forget_tracks(&[track_id]).await?;
        self.store.apply_deleted(PROJECTION_CONSUMER, event_id, track_id).await?;
        Ok(())
    }

    /// Applies `user.deleted`: the account's listening history is removed, while the plays
    /// it counted stay in charts and series, attributed to no one.
    ///
    /// - In the warehouse, the user's plays leave the raw facts (no history is left, in
    ///   the page or the total) and the days they were active go, so active-user counts of
    ///   past days drop by them. What their plays added to the rollups stays: plays,
    ///   streams and distinct listeners of top tracks and play series do not change
    ///   (ClickHouse keeps them as aggregate states; the embedded warehouse gives the
    ///   user's rows a random id kept nowhere).
    /// - In the service's own database, the ids of the plays they had accepted through the
    ///   API are deleted.
    ///
    /// Idempotent, so a redelivered or replayed event is harmless: neither step is gated
    /// by the inbox, and a failure of either fails the event, whose retry runs both again.
    /// A play of the user first counted after this (a `song.played` still on its way) is
    /// counted as any other.
    #[tracing::instrument(skip_all, fields(%event_id, %user_id))]
    pub async fn forget_user(&self, event_id: Uuid, user_id: Uuid) -> Result<(), AnalyticsError> {
        self.warehouse.forget_user(user_id).await?;
        let accepted_plays = self.store.forget_user(user_id).await?;
        tracing::info!(accepted_plays, "forgot a deleted account's listening");
        Ok(())
    }

    /// Summaries of every id, asking the catalog about those the projection lacks; an id
    /// the catalog does not report ready is unknown.
    async fn known_tracks(
        &self,
        caller: &Caller,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, TrackSummary>, AnalyticsError> {
        let mut known = self.summaries(ids).await?;
        let mut missing: Vec<Uuid> =
            ids.iter().copied().filter(|id| !known.contains_key(id)).collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(known);
        }
        let ready = self
            .catalog
            .ready_tracks(caller, &missing)
            .await
            .map_err(AnalyticsError::CatalogUnavailable)?;
        self.store.upsert_summaries(&ready).await?;
        known.extend(ready.into_iter().map(|summary| (summary.id, summary)));
        let unknown: Vec<Uuid> = missing.into_iter().filter(|id| !known.contains_key(id)).collect();
        if unknown.is_empty() { Ok(known) } else { Err(AnalyticsError::UnknownTracks(unknown)) }
    }

    async fn summaries(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, TrackSummary>, StoreError> {
        Ok(self.store.summaries(ids).await?.into_iter().map(|s| (s.id, s)).collect())
    }
}

fn admin(caller: &Caller) -> Result<(), AnalyticsError> {
    if caller.is_admin() { Ok(()) } else { Err(AnalyticsError::AdminOnly) }
}

/// A series' range in milliseconds: `to` defaults to now and `from` to `default_span`
/// before `to`; it must hold at most [`MAX_BUCKETS`] buckets.
fn range(
    bucketing: Bucketing,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    default_span: TimeDelta,
) -> Result<(i64, i64), AnalyticsError> {
    let to = to.unwrap_or_else(now);
    let from = from.unwrap_or(to - default_span);
    if from > to {
        return Err(AnalyticsError::Invalid("`from` is after `to`".into()));
    }
    let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
    if bucketing.count(from_ms, to_ms) > MAX_BUCKETS {
        return Err(AnalyticsError::Invalid(format!(
            "the range holds more than {MAX_BUCKETS} buckets; narrow it or use a longer interval"
        )));
    }
    Ok((from_ms, to_ms))
}

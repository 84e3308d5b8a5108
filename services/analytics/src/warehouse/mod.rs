//! The warehouse port: where plays, activity and request metrics are counted, with two
//! adapters that give the same answers — an embedded one (SQLite, under the data dir) for
//! `tonearm up` and ClickHouse for `tonearm serve analytics`.
//!
//! Rules every adapter keeps (the contract suite in `tests/warehouse.rs` checks them):
//! - a play is counted once per `play_id`, however often it is recorded; a request batch
//!   once per batch id; activity is a set of (user, day);
//! - buckets are the ones of [`crate::domain::buckets`]; a play belongs to the bucket of
//!   `played_at_ms`;
//! - top tracks rank by plays, most first, ties by track id ascending (byte order);
//! - history is newest first, ties by play id descending;
//! - a forgotten track ([`Warehouse::forget_tracks`]) is neither listed nor counted by
//!   top tracks and history, in their pages and their totals alike; series and active
//!   users still count its plays, which happened all the same;
//! - a forgotten user ([`Warehouse::forget_user`]) has no history and no active days, and
//!   what their plays added to charts and series (plays, streams, listeners) stays;
//! - percentiles follow [`crate::domain::quantile`].

pub mod clickhouse;
pub mod embedded;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{
    ActivePoint, ActivityFact, Bucketing, HistoryEntry, PlayFact, PlayPoint, RequestFact,
    RouteStats, TrackPlays,
};

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// The engine could not be reached or failed the statement; worth retrying.
    #[error("the analytics store is unavailable: {0}")]
    Unavailable(String),
    /// The engine answered something this code cannot read.
    #[error("the analytics store answered unexpectedly: {0}")]
    Corrupt(String),
}

#[async_trait]
pub trait Warehouse: Send + Sync + 'static {
    /// Creates what is missing (tables, views); safe to run on every start.
    async fn migrate(&self) -> Result<(), WarehouseError>;

    /// Answers when the engine is reachable.
    async fn ping(&self) -> Result<(), WarehouseError>;

    /// Counts plays not counted before (by `play_id`, also within `plays`), and the
    /// activity of their users; returns how many were new.
    async fn record_plays(&self, plays: &[PlayFact]) -> Result<u64, WarehouseError>;

    /// Marks users active on the days of their facts.
    async fn record_activity(&self, activity: &[ActivityFact]) -> Result<(), WarehouseError>;

    /// Counts a batch of requests once per `batch_id`; false when it was counted before.
    async fn record_requests(
        &self,
        batch_id: Uuid,
        requests: &[RequestFact],
    ) -> Result<bool, WarehouseError>;

    /// A page of the tracks played at or after `from_ms` (a bucket start), ranked, and how
    /// many tracks were played in all; forgotten tracks are in neither.
    async fn top_tracks(
        &self,
        from_ms: i64,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<TrackPlays>, u64), WarehouseError>;

    /// Plays, streams and listeners per bucket, for buckets starting in
    /// `[bucketing.start_of(from_ms), to_ms]`; only buckets with plays, any order.
    /// `bucketing` is `Hour` or `Day`.
    async fn play_series(
        &self,
        bucketing: Bucketing,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<PlayPoint>, WarehouseError>;

    /// Distinct active users per bucket (any of `Day`, `Week`, `Month`), for buckets
    /// starting in `[bucketing.start_of(from_ms), to_ms]`; only buckets with activity, any
    /// order.
    async fn active_users(
        &self,
        bucketing: Bucketing,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<ActivePoint>, WarehouseError>;

    /// Per route (method and template), requests answered at or after `from_ms`: counts,
    /// errors and p50/p95 durations; most requested first, ties by method then route.
    async fn api_routes(&self, from_ms: i64) -> Result<Vec<RouteStats>, WarehouseError>;

    /// A page of a user's plays, newest first, and how many there are; plays of forgotten
    /// tracks are in neither.
    async fn history(
        &self,
        user_id: Uuid,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<HistoryEntry>, u64), WarehouseError>;

    /// Tombstones deleted tracks (`track.deleted`), so that top tracks and histories stop
    /// listing and counting them: their plays stay where they are (series still count
    /// them), but a page and its total must agree, and the service can only show tracks it
    /// has a summary of. Idempotent; plays of the tracks recorded later are left out too.
    async fn forget_tracks(&self, track_ids: &[Uuid]) -> Result<(), WarehouseError>;

    /// Removes a deleted account's listening (`user.deleted`): its plays leave the raw
    /// facts, so that no history is left, and its days of activity go. What its plays
    /// added to the rollups stays, attributed to no one: plays, streams and distinct
    /// listeners of charts and series do not change. Idempotent, and visible when this
    /// returns; the user's plays recorded again afterwards count nothing and bring no
    /// history back. A play of theirs first recorded afterwards (a `song.played` still on
    /// its way) is counted as any other: nothing deletes it.
    async fn forget_user(&self, user_id: Uuid) -> Result<(), WarehouseError>;
}

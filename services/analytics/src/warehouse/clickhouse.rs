//! The ClickHouse warehouse, for `tonearm serve analytics`.
//!
//! Tables, in one database (`tonearm_analytics` unless the URL names another):
//! - `plays`: every counted play. Partitioned by month, ordered by (user, played at, play
//!   id), so a user's history is one range read already in the order it is shown.
//! - `track_hourly`, `track_daily`: per bucket and track the plays, streams and a
//!   `uniqExact` state of the listeners; `plays_hourly`, `plays_daily`: the same per
//!   bucket over all tracks. Materialized views on `plays` fill them within the insert,
//!   so charts read a row per bucket (and track) instead of every play. Top tracks merges
//!   whole days from `track_daily` with the hours of a partial first day from
//!   `track_hourly`; merging listener states (not adding counts) keeps listeners exact
//!   distinct users over the whole window.
//! - `activity`: (day, user), fed by a view on `plays` and by `record_activity`. Queries
//!   count distinct users, so duplicate rows do no harm; merges fold them away.
//! - `requests`: every request fact, raw, because exact percentiles need every duration.
//!   `quantileExact` takes the element at `floor(level × n)`, as `domain::quantile` does.
//! - `deleted_tracks`: tombstones of deleted tracks, which top tracks and history leave out
//!   with `NOT IN`; duplicates (a redelivered `track.deleted`) do no harm and merge away.
//!
//! Forgetting a user deletes their rows of `plays` and `activity` with `ALTER TABLE …
//! DELETE`, a mutation: views do not see it, so the rollups keep what the plays added, as
//! aggregate states that name no one. A mutation runs in the background and rewrites the
//! parts it touches; 18.16 has no `mutations_sync`, so the call waits on `system.mutations`
//! (bounded by [`MUTATION_WAIT`]), and issues none for a table without the user's rows or
//! with a deletion of them still running, so a redelivery costs a read.
//!
//! Ids are `FixedString(16)` holding the UUID's bytes big-endian, which sorts bytewise as
//! `Uuid::cmp` does and ties are broken by; ClickHouse's `UUID` type sorts otherwise. Times are `Int64` milliseconds and buckets come from them by floored
//! arithmetic, so the server's time zone never enters a count; calendar months go through
//! `Date`, which has no zone (and covers 1970 to 2149).
//!
//! Everything here keeps to what both ClickHouse 18.16 (Debian's package, which the tests
//! run) and current releases accept: no `DateTime64`, `TTL`, window functions,
//! `SimpleAggregateFunction` or server-side query parameters. Rows travel as plain
//! `RowBinary` with the client's validation off (18.16 knows neither the
//! `RowBinaryWithNamesAndTypes` format it uses nor its `DESCRIBE` settings), and values
//! are bound on the client.
//!
//! Exactly once: ClickHouse has no unique keys, so the ledger, `counted_facts` in the
//! service's SQL database, decides what is new. In one SQL transaction a batch's ids are
//! claimed (`INSERT … ON CONFLICT DO NOTHING RETURNING`), only the rows claimed now go to
//! ClickHouse in one insert, then the transaction commits. A failed insert rolls the claim
//! back, so the redelivery counts those facts. A concurrent delivery of the same id waits
//! on the uncommitted claim (row lock on PostgreSQL, the write lock on SQLite) instead of
//! counting it too; ids are claimed in sorted order so two batches cannot deadlock.
//!
//! That leaves the window between ClickHouse acknowledging the insert and the claim's
//! commit: the process dies, or the SQL database fails, in between. So before claiming,
//! plays are written to `pending_facts` in a transaction of their own, and the claim's
//! transaction removes them. A play claimed while still pending was on its way before and
//! its outcome is unknown; ClickHouse is asked whether it holds it, and it is inserted
//! only if not. (Request batches keep the window: their rows carry no id to look up, and a
//! doubled batch moves a latency percentile, not a count anyone is shown.)

use std::{collections::HashSet, future::Future, hash::Hash, time::Duration};

use async_trait::async_trait;
use chrono::Utc;
use clickhouse::{Client, Row, RowOwned, RowRead, RowWrite};
use kernel::{db::SqlPool, engine::EngineUrl};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder, Sqlite, Transaction};
use uuid::Uuid;

use super::{Warehouse, WarehouseError};
use crate::domain::{
    ActivePoint, ActivityFact, Bucketing, DAY_MS, HOUR_MS, HistoryEntry, PlayFact, PlayPoint,
    RequestFact, RouteStats, TrackPlays,
};

const DEFAULT_PORT: u16 = 8123;
const DEFAULT_DATABASE: &str = "tonearm_analytics";
/// A server that stops answering reads as unavailable rather than stalling a consumer.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// SQLite binds at most 32,766 values per statement; a claimed id takes two.
const SQLITE_CLAIM_CHUNK: usize = 4_000;
/// How long forgetting a user waits for its deletions to finish; past that it is
/// unavailable, and a retry waits on the same deletions rather than starting new ones.
const MUTATION_WAIT: Duration = Duration::from_secs(30);
/// The tables whose rows name a user; the rollups hold aggregate states only.
const USER_TABLES: [&str; 2] = ["plays", "activity"];

pub struct ClickHouseWarehouse {
    client: Client,
    database: String,
    ledger: SqlPool,
}

impl ClickHouseWarehouse {
    /// Connects to `clickhouse://host:port/database` (the HTTP interface, port 8123 by
    /// default), creating the database when missing. `ledger` is the analytics service's
    /// own database (migrated by `analytics::store::open`), whose `counted_facts` table
    /// makes a redelivered fact count once.
    pub async fn connect(url: &str, ledger: SqlPool) -> Result<Self, WarehouseError> {
        let endpoint = Endpoint::parse(url)?;
        let server = endpoint.client();
        within(
            server
                .query(&format!("CREATE DATABASE IF NOT EXISTS {}", quoted(&endpoint.database)))
                .execute(),
        )
        .await?;
        Ok(Self::new(server, endpoint.database, ledger))
    }

    fn new(server: Client, database: String, ledger: SqlPool) -> Self {
        Self { client: server.with_database(&database), database, ledger }
    }

    /// One insert of `rows` (one RowBinary request).
    async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<(), WarehouseError>
    where
        T: RowOwned + RowWrite,
    {
        let mut insert = self
            .client
            .insert::<T>(table)
            .await
            .map_err(engine_error)?
            .with_timeouts(Some(STATEMENT_TIMEOUT), Some(STATEMENT_TIMEOUT))
            // The five views on `plays` aggregate the block side by side, not one by one.
            .with_setting("parallel_view_processing", "1");
        for row in rows {
            insert.write(row).await.map_err(engine_error)?;
        }
        insert.end().await.map_err(engine_error)
    }

    async fn fetch<T>(&self, query: clickhouse::query::Query) -> Result<Vec<T>, WarehouseError>
    where
        T: RowOwned + RowRead,
    {
        within(query.fetch_all::<T>()).await
    }
}

#[async_trait]
impl Warehouse for ClickHouseWarehouse {
    #[tracing::instrument(skip_all, fields(database = %self.database))]
    async fn migrate(&self) -> Result<(), WarehouseError> {
        for statement in schema(&quoted(&self.database)) {
            within(self.client.query(&statement).execute()).await?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), WarehouseError> {
        within(self.client.query("SELECT 1").fetch_one::<u8>()).await.map(drop)
    }

    #[tracing::instrument(skip_all, fields(plays = plays.len()))]
    async fn record_plays(&self, plays: &[PlayFact]) -> Result<u64, WarehouseError> {
        if plays.is_empty() {
            return Ok(0);
        }
        let ids: Vec<Uuid> = plays.iter().map(|play| play.play_id).collect();
        let interrupted = Ledger::mark_pending(&self.ledger, &ids).await?;
        let mut ledger = Ledger::begin(&self.ledger).await?;
        let mut fresh: HashSet<Uuid> = ledger.claim(&ids).await?.into_iter().collect();
        let claimed = fresh.len() as u64;
        let unsure: Vec<&PlayFact> = plays
            .iter()
            .filter(|play| fresh.contains(&play.play_id) && interrupted.contains(&play.play_id))
            .collect();
        if !unsure.is_empty() {
            match self.inserted_already(&unsure).await {
                Ok(found) => fresh.retain(|id| !found.contains(id)),
                Err(error) => {
                    ledger.rollback().await;
                    return Err(error);
                }
            }
        }
        // `remove` also keeps a play whose id repeats within the batch from counting twice.
        let rows: Vec<PlayRow> =
            plays.iter().filter(|play| fresh.remove(&play.play_id)).map(PlayRow::from).collect();
        let inserted = if rows.is_empty() { Ok(()) } else { self.insert("plays", &rows).await };
        if inserted.is_ok() {
            ledger.unmark_pending(&ids).await?;
        }
        ledger.settle(inserted).await?;
        Ok(claimed)
    }

    #[tracing::instrument(skip_all, fields(facts = activity.len()))]
    async fn record_activity(&self, activity: &[ActivityFact]) -> Result<(), WarehouseError> {
        let rows: Vec<ActivityRow> = unique(activity.iter().map(|fact| ActivityRow {
            day_ms: Bucketing::Day.start_of(fact.at_ms),
            user_id: *fact.user_id.as_bytes(),
        }));
        if rows.is_empty() {
            return Ok(());
        }
        self.insert("activity", &rows).await
    }

    #[tracing::instrument(skip_all, fields(%batch_id, requests = requests.len()))]
    async fn record_requests(
        &self,
        batch_id: Uuid,
        requests: &[RequestFact],
    ) -> Result<bool, WarehouseError> {
        let mut ledger = Ledger::begin(&self.ledger).await?;
        let claimed = !ledger.claim(&[batch_id]).await?.is_empty();
        let rows: Vec<RequestRow> = requests
            .iter()
            .map(|request| RequestRow {
                at_ms: request.at_ms,
                method: request.method.clone(),
                route: request.route.clone(),
                status: request.status,
                duration_us: request.duration_us,
            })
            .collect();
        let inserted =
            if claimed && !rows.is_empty() { self.insert("requests", &rows).await } else { Ok(()) };
        ledger.settle(inserted).await?;
        Ok(claimed)
    }

    #[tracing::instrument(skip_all)]
    async fn top_tracks(
        &self,
        from_ms: i64,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<TrackPlays>, u64), WarehouseError> {
        // Whole days from the day rollup, the hours before the first of them from the
        // hour rollup: a 30-day chart merges about 30 rows per track, not 720.
        let first_whole_day = {
            let day = Bucketing::Day.start_of(from_ms);
            if day < from_ms { day + DAY_MS } else { day }
        };
        let states = "SELECT track_id, plays, streams, listeners FROM track_daily \
                      WHERE day_ms >= ? \
                      AND track_id NOT IN (SELECT track_id FROM deleted_tracks) \
                      UNION ALL \
                      SELECT track_id, plays, streams, listeners FROM track_hourly \
                      WHERE hour_ms >= ? AND hour_ms < ? \
                      AND track_id NOT IN (SELECT track_id FROM deleted_tracks)";
        let page = self.fetch::<TrackRow>(
            self.client
                .query(&format!(
                    "SELECT track_id, countMerge(plays) AS track_plays, sumMerge(streams), \
                            uniqExactMerge(listeners) \
                     FROM ({states}) \
                     GROUP BY track_id \
                     ORDER BY track_plays DESC, track_id ASC \
                     LIMIT ?, ?"
                ))
                .bind(first_whole_day)
                .bind(from_ms)
                .bind(first_whole_day)
                .bind(offset)
                .bind(limit),
        );
        let total = within(
            self.client
                .query(&format!("SELECT uniqExact(track_id) FROM ({states})"))
                .bind(first_whole_day)
                .bind(from_ms)
                .bind(first_whole_day)
                .fetch_one::<u64>(),
        );
        let (page, total) = tokio::try_join!(page, total)?;
        let tracks = page
            .into_iter()
            .map(|row| TrackPlays {
                track_id: Uuid::from_bytes(row.track_id),
                plays: row.plays,
                streams: row.streams,
                listeners: row.listeners,
            })
            .collect();
        Ok((tracks, total))
    }

    #[tracing::instrument(skip_all, fields(?bucketing))]
    async fn play_series(
        &self,
        bucketing: Bucketing,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<PlayPoint>, WarehouseError> {
        let (table, column) = match bucketing {
            Bucketing::Hour => ("plays_hourly", "hour_ms"),
            Bucketing::Day | Bucketing::Week | Bucketing::Month => ("plays_daily", "day_ms"),
        };
        let (low, high) = bucket_range(bucketing, from_ms, to_ms);
        let rows = self
            .fetch::<PointRow>(
                self.client
                    .query(&format!(
                        "SELECT {bucket} AS t_ms, countMerge(plays), sumMerge(streams), \
                                uniqExactMerge(listeners) \
                         FROM {table} WHERE {column} >= ? AND {column} < ? \
                         GROUP BY t_ms",
                        bucket = bucket_of(bucketing, column),
                    ))
                    .bind(low)
                    .bind(high),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| PlayPoint {
                t_ms: row.t_ms,
                plays: row.plays,
                streams: row.streams,
                listeners: row.listeners,
            })
            .collect())
    }

    #[tracing::instrument(skip_all, fields(?bucketing))]
    async fn active_users(
        &self,
        bucketing: Bucketing,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<ActivePoint>, WarehouseError> {
        if bucketing == Bucketing::Hour {
            return Err(WarehouseError::Corrupt(
                "active users are kept per day and cannot be counted per hour".into(),
            ));
        }
        let (low, high) = bucket_range(bucketing, from_ms, to_ms);
        let rows = self
            .fetch::<ActiveRow>(
                self.client
                    .query(&format!(
                        "SELECT {bucket} AS t_ms, uniqExact(user_id) FROM activity \
                         WHERE day_ms >= ? AND day_ms < ? GROUP BY t_ms",
                        bucket = bucket_of(bucketing, "day_ms"),
                    ))
                    .bind(low)
                    .bind(high),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| ActivePoint { t_ms: row.t_ms, active_users: row.active_users })
            .collect())
    }

    #[tracing::instrument(skip_all)]
    async fn api_routes(&self, from_ms: i64) -> Result<Vec<RouteStats>, WarehouseError> {
        let rows = self
            .fetch::<RouteRow>(
                self.client
                    .query(
                        "SELECT method, route, count() AS answered, countIf(status >= 500), \
                                quantileExact(0.5)(duration_us), quantileExact(0.95)(duration_us) \
                         FROM requests WHERE at_ms >= ? \
                         GROUP BY method, route \
                         ORDER BY answered DESC, method ASC, route ASC",
                    )
                    .bind(from_ms),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| RouteStats {
                method: row.method,
                route: row.route,
                requests: row.requests,
                errors: row.errors,
                p50_us: row.p50_us,
                p95_us: row.p95_us,
            })
            .collect())
    }

    #[tracing::instrument(skip_all)]
    async fn history(
        &self,
        user_id: Uuid,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<HistoryEntry>, u64), WarehouseError> {
        let user = user_id.simple().to_string();
        let page = self.fetch::<HistoryRow>(
            self.client
                .query(
                    "SELECT play_id, track_id, played_at_ms, played_ms FROM plays \
                     WHERE user_id = toFixedString(unhex(?), 16) \
                     AND track_id NOT IN (SELECT track_id FROM deleted_tracks) \
                     ORDER BY played_at_ms DESC, play_id DESC \
                     LIMIT ?, ?",
                )
                .bind(&user)
                .bind(offset)
                .bind(limit),
        );
        let total = within(
            self.client
                .query(
                    "SELECT count() FROM plays WHERE user_id = toFixedString(unhex(?), 16) \
                     AND track_id NOT IN (SELECT track_id FROM deleted_tracks)",
                )
                .bind(&user)
                .fetch_one::<u64>(),
        );
        let (page, total) = tokio::try_join!(page, total)?;
        let entries = page
            .into_iter()
            .map(|row| HistoryEntry {
                play_id: Uuid::from_bytes(row.play_id),
                track_id: Uuid::from_bytes(row.track_id),
                played_at_ms: row.played_at_ms,
                played_ms: row.played_ms,
            })
            .collect();
        Ok((entries, total))
    }

    #[tracing::instrument(skip_all, fields(tracks = track_ids.len()))]
    async fn forget_tracks(&self, track_ids: &[Uuid]) -> Result<(), WarehouseError> {
        let rows: Vec<DeletedTrackRow> = unique(
            track_ids.iter().map(|track_id| DeletedTrackRow { track_id: *track_id.as_bytes() }),
        );
        if rows.is_empty() {
            return Ok(());
        }
        self.insert("deleted_tracks", &rows).await
    }

    #[tracing::instrument(skip_all, fields(%user_id))]
    async fn forget_user(&self, user_id: Uuid) -> Result<(), WarehouseError> {
        let user = user_id.simple().to_string();
        for table in USER_TABLES {
            if self.deletions_running(table, &user).await? == 0
                && self.rows_of(table, &user).await? > 0
            {
                within(
                    self.client
                        .query(&format!(
                            "ALTER TABLE {table} DELETE WHERE user_id = toFixedString(unhex(?), 16)"
                        ))
                        .bind(&user)
                        .execute(),
                )
                .await?;
            }
        }
        let deadline = tokio::time::Instant::now() + MUTATION_WAIT;
        let mut pause = Duration::from_millis(20);
        for table in USER_TABLES {
            while self.deletions_running(table, &user).await? > 0 {
                if tokio::time::Instant::now() >= deadline {
                    return Err(WarehouseError::Unavailable(format!(
                        "deleting user {user_id} from {table} has not finished after {} s; \
                         it goes on in the background",
                        MUTATION_WAIT.as_secs()
                    )));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
        Ok(())
    }
}

impl ClickHouseWarehouse {
    /// Which of `plays`, left pending by an interrupted attempt, ClickHouse holds. Rare (a
    /// crash or a lost commit), so a scan bounded by the plays' time range will do.
    async fn inserted_already(&self, plays: &[&PlayFact]) -> Result<HashSet<Uuid>, WarehouseError> {
        let ids: Vec<String> = plays.iter().map(|play| play.play_id.simple().to_string()).collect();
        let from = plays.iter().map(|play| play.played_at_ms).min().unwrap_or_default();
        let to = plays.iter().map(|play| play.played_at_ms).max().unwrap_or_default();
        let found = self
            .fetch::<PlayIdRow>(
                self.client
                    .query(
                        "SELECT play_id FROM plays \
                         WHERE played_at_ms >= ? AND played_at_ms <= ? \
                         AND has(?, lower(hex(play_id)))",
                    )
                    .bind(from)
                    .bind(to)
                    .bind(ids),
            )
            .await?;
        Ok(found.into_iter().map(|row| Uuid::from_bytes(row.play_id)).collect())
    }

    /// How many rows of `table` belong to `user` (hex).
    async fn rows_of(&self, table: &str, user: &str) -> Result<u64, WarehouseError> {
        within(
            self.client
                .query(&format!(
                    "SELECT count() FROM {table} WHERE user_id = toFixedString(unhex(?), 16)"
                ))
                .bind(user)
                .fetch_one::<u64>(),
        )
        .await
    }

    /// How many deletions of `user`'s (hex) rows from `table` have not finished; the
    /// statement names the user, as `forget_user` wrote it.
    async fn deletions_running(&self, table: &str, user: &str) -> Result<u64, WarehouseError> {
        within(
            self.client
                .query(
                    "SELECT count() FROM system.mutations \
                     WHERE database = ? AND table = ? AND is_done = 0 \
                     AND position(command, ?) > 0",
                )
                .bind(&self.database)
                .bind(table)
                .bind(user)
                .fetch_one::<u64>(),
        )
        .await
    }
}

/// The tables and views, created when missing. Views follow the tables they read and
/// fill, and a view only sees plays inserted after it exists.
fn schema(database: &str) -> Vec<String> {
    let db = database;
    let hour = floored("played_at_ms", HOUR_MS);
    let day = floored("played_at_ms", DAY_MS);
    let by_month =
        |column: &str| format!("PARTITION BY toYYYYMM(toDateTime(intDiv({column}, 1000), 'UTC'))");
    let track_rollup = |table: &str, column: &str| {
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{table} (
                {column} Int64,
                track_id FixedString(16),
                plays AggregateFunction(count),
                streams AggregateFunction(sum, UInt64),
                listeners AggregateFunction(uniqExact, FixedString(16))
            ) ENGINE = AggregatingMergeTree() {partition} ORDER BY ({column}, track_id)",
            partition = by_month(column),
        )
    };
    let track_view = |table: &str, column: &str, bucket: &str| {
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table}_mv TO {db}.{table} AS
             SELECT {bucket} AS {column}, track_id, countState() AS plays,
                    sumState(toUInt64(stream)) AS streams, uniqExactState(user_id) AS listeners
             FROM {db}.plays GROUP BY {column}, track_id"
        )
    };
    // A row per bucket: small enough to go unpartitioned.
    let total_rollup = |table: &str, column: &str| {
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{table} (
                {column} Int64,
                plays AggregateFunction(count),
                streams AggregateFunction(sum, UInt64),
                listeners AggregateFunction(uniqExact, FixedString(16))
            ) ENGINE = AggregatingMergeTree() ORDER BY {column}"
        )
    };
    let total_view = |table: &str, column: &str, bucket: &str| {
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table}_mv TO {db}.{table} AS
             SELECT {bucket} AS {column}, countState() AS plays,
                    sumState(toUInt64(stream)) AS streams, uniqExactState(user_id) AS listeners
             FROM {db}.plays GROUP BY {column}"
        )
    };
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.plays (
                play_id FixedString(16),
                user_id FixedString(16),
                track_id FixedString(16),
                played_at_ms Int64,
                played_ms UInt64,
                stream UInt8
            ) ENGINE = MergeTree() {partition} ORDER BY (user_id, played_at_ms, play_id)",
            partition = by_month("played_at_ms"),
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.activity (
                day_ms Int64,
                user_id FixedString(16)
            ) ENGINE = ReplacingMergeTree() {partition} ORDER BY (day_ms, user_id)",
            partition = by_month("day_ms"),
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.deleted_tracks (
                track_id FixedString(16)
            ) ENGINE = ReplacingMergeTree() ORDER BY track_id"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.requests (
                at_ms Int64,
                method String,
                route String,
                status UInt16,
                duration_us UInt64
            ) ENGINE = MergeTree() {partition} ORDER BY at_ms",
            partition = by_month("at_ms"),
        ),
        track_rollup("track_hourly", "hour_ms"),
        track_rollup("track_daily", "day_ms"),
        total_rollup("plays_hourly", "hour_ms"),
        total_rollup("plays_daily", "day_ms"),
        track_view("track_hourly", "hour_ms", &hour),
        track_view("track_daily", "day_ms", &day),
        total_view("plays_hourly", "hour_ms", &hour),
        total_view("plays_daily", "day_ms", &day),
        format!(
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.activity_mv TO {db}.activity AS
             SELECT {day} AS day_ms, user_id FROM {db}.plays GROUP BY day_ms, user_id"
        ),
    ]
}

/// `column` rounded down to a multiple of `unit` as `Bucketing` does, before 1970 too:
/// ClickHouse's `%` keeps the sign of its left side.
fn floored(column: &str, unit: i64) -> String {
    format!("toInt64({column} - (({column} % {unit}) + {unit}) % {unit})")
}

/// The start of the bucket holding `column`, which holds hour starts for `Hour` and day
/// starts otherwise.
fn bucket_of(bucketing: Bucketing, column: &str) -> String {
    let day_number = format!("intDiv({column}, {DAY_MS})");
    match bucketing {
        Bucketing::Hour | Bucketing::Day => format!("toInt64({column})"),
        // 1970-01-01 was a Thursday, three days after a Monday.
        Bucketing::Week => {
            format!("toInt64(({day_number} - (({day_number} + 3) % 7 + 7) % 7) * {DAY_MS})")
        }
        Bucketing::Month => {
            format!("toInt64(toUInt16(toStartOfMonth(toDate(toUInt16({day_number}))))) * {DAY_MS}")
        }
    }
}

/// `[low, high)` holding the rows of every bucket starting in
/// `[bucketing.start_of(from_ms), to_ms]`.
fn bucket_range(bucketing: Bucketing, from_ms: i64, to_ms: i64) -> (i64, i64) {
    let low = bucketing.start_of(from_ms);
    let high = bucketing.next(bucketing.start_of(to_ms));
    (low, high.max(low))
}

fn unique<T: Eq + Hash + Clone>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    items.filter(|item| seen.insert(item.clone())).collect()
}

/// Runs one statement, bounded by [`STATEMENT_TIMEOUT`].
async fn within<T>(
    statement: impl Future<Output = clickhouse::error::Result<T>>,
) -> Result<T, WarehouseError> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, statement).await {
        Ok(result) => result.map_err(engine_error),
        Err(_) => Err(WarehouseError::Unavailable(format!(
            "ClickHouse did not answer within {} s",
            STATEMENT_TIMEOUT.as_secs()
        ))),
    }
}

fn engine_error(error: clickhouse::error::Error) -> WarehouseError {
    use clickhouse::error::Error;
    match error {
        Error::Network(_) | Error::BadResponse(_) | Error::TimedOut => {
            WarehouseError::Unavailable(format!("ClickHouse: {error}"))
        }
        other => WarehouseError::Corrupt(format!("ClickHouse: {other}")),
    }
}

fn ledger_error(error: sqlx::Error) -> WarehouseError {
    WarehouseError::Unavailable(format!("the counted-facts ledger: {error}"))
}

/// A database name as an identifier. `Endpoint::parse` admits only `[A-Za-z0-9_]`, so
/// backquotes need no escaping inside.
fn quoted(database: &str) -> String {
    format!("`{database}`")
}

/// The transaction holding a batch's claim in `counted_facts`.
enum Ledger {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Ledger {
    async fn begin(pool: &SqlPool) -> Result<Self, WarehouseError> {
        Ok(match pool {
            SqlPool::Sqlite(pool) => Self::Sqlite(pool.begin().await.map_err(ledger_error)?),
            SqlPool::Postgres(pool) => Self::Postgres(pool.begin().await.map_err(ledger_error)?),
        })
    }

    /// Inserts `ids` not there yet and returns them. Sorted, so that two transactions
    /// claiming overlapping batches take their row locks in one order and cannot deadlock.
    async fn claim(&mut self, ids: &[Uuid]) -> Result<Vec<Uuid>, WarehouseError> {
        self.insert_new("counted_facts", "counted_at", ids).await
    }

    /// Writes `ids` to `pending_facts` and commits, before any of them is claimed; returns
    /// those pending already, whose earlier attempt may have reached ClickHouse.
    async fn mark_pending(pool: &SqlPool, ids: &[Uuid]) -> Result<HashSet<Uuid>, WarehouseError> {
        let mut ledger = Self::begin(pool).await?;
        let marked: HashSet<Uuid> =
            ledger.insert_new("pending_facts", "pending_at", ids).await?.into_iter().collect();
        ledger.settle(Ok(())).await?;
        Ok(ids.iter().copied().filter(|id| !marked.contains(id)).collect())
    }

    /// Inserts the `ids` (sorted, once each) that `table` does not hold yet, stamped now in
    /// `at_column`; returns those inserted.
    async fn insert_new(
        &mut self,
        table: &str,
        at_column: &str,
        ids: &[Uuid],
    ) -> Result<Vec<Uuid>, WarehouseError> {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let ids = sorted.as_slice();
        let now = Utc::now();
        match self {
            Self::Sqlite(tx) => {
                let mut inserted = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(SQLITE_CLAIM_CHUNK) {
                    let mut query = QueryBuilder::<Sqlite>::new(format!(
                        "INSERT INTO {table} (fact_id, {at_column}) "
                    ));
                    query.push_values(chunk, |mut row, id| {
                        row.push_bind(*id).push_bind(now);
                    });
                    query.push(" ON CONFLICT (fact_id) DO NOTHING RETURNING fact_id");
                    let rows: Vec<Uuid> = query
                        .build_query_scalar()
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(ledger_error)?;
                    inserted.extend(rows);
                }
                Ok(inserted)
            }
            // One array parameter for the whole batch: no chunking, one round trip.
            Self::Postgres(tx) => sqlx::query_scalar(&format!(
                "INSERT INTO {table} (fact_id, {at_column})
                 SELECT id, $2 FROM UNNEST($1::uuid[]) AS batch(id) ORDER BY id
                 ON CONFLICT (fact_id) DO NOTHING
                 RETURNING fact_id"
            ))
            .bind(ids)
            .bind(now)
            .fetch_all(&mut **tx)
            .await
            .map_err(ledger_error),
        }
    }

    /// Removes `ids` from `pending_facts` within the claim, so they stop being pending
    /// exactly when they are counted.
    async fn unmark_pending(&mut self, ids: &[Uuid]) -> Result<(), WarehouseError> {
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        match self {
            Self::Sqlite(tx) => {
                for chunk in sorted.chunks(SQLITE_CLAIM_CHUNK) {
                    let mut query =
                        QueryBuilder::<Sqlite>::new("DELETE FROM pending_facts WHERE fact_id IN (");
                    let mut list = query.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    query.push(")");
                    query.build().execute(&mut **tx).await.map_err(ledger_error)?;
                }
            }
            Self::Postgres(tx) => {
                sqlx::query("DELETE FROM pending_facts WHERE fact_id = ANY($1::uuid[])")
                    .bind(&sorted)
                    .execute(&mut **tx)
                    .await
                    .map_err(ledger_error)?;
            }
        }
        Ok(())
    }

    /// Commits the claim once its facts are in ClickHouse; gives it up when they are not,
    /// so that a redelivery counts them.
    async fn settle(self, inserted: Result<(), WarehouseError>) -> Result<(), WarehouseError> {
        if let Err(error) = inserted {
            self.rollback().await;
            return Err(error);
        }
        match self {
            Self::Sqlite(tx) => tx.commit().await,
            Self::Postgres(tx) => tx.commit().await,
        }
        .map_err(ledger_error)
    }

    /// Gives the claim up at once (SQLite's write lock above all); a failed rollback
    /// leaves it to the connection's reset, which discards it too.
    async fn rollback(self) {
        let result = match self {
            Self::Sqlite(tx) => tx.rollback().await,
            Self::Postgres(tx) => tx.rollback().await,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "cannot roll back a counted-facts claim");
        }
    }
}

/// Where a `clickhouse://` URL points.
struct Endpoint {
    http: String,
    database: String,
    user: Option<String>,
    password: Option<String>,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, WarehouseError> {
        let invalid = |reason: &str| {
            WarehouseError::Unavailable(format!("{}: {reason}", EngineUrl::new(url).redacted()))
        };
        let parsed = url::Url::parse(url).map_err(|error| invalid(&error.to_string()))?;
        if parsed.scheme() != "clickhouse" {
            return Err(invalid("not a clickhouse:// URL"));
        }
        let host = parsed.host_str().filter(|host| !host.is_empty());
        let host = host.ok_or_else(|| invalid("no host"))?;
        let port = parsed.port().unwrap_or(DEFAULT_PORT);
        let database = match parsed.path().trim_matches('/') {
            "" => DEFAULT_DATABASE.to_owned(),
            name => name.to_owned(),
        };
        if !database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid("a database name is letters, digits and underscores"));
        }
        let user = Some(percent_decoded(parsed.username())).filter(|user| !user.is_empty());
        let password = parsed.password().map(percent_decoded);
        Ok(Self { http: format!("http://{host}:{port}"), database, user, password })
    }

    /// A client of the server, in no database yet.
    fn client(&self) -> Client {
        let mut client = Client::default().with_url(&self.http).with_validation(false);
        if let Some(user) = &self.user {
            client = client.with_user(user);
        }
        if let Some(password) = &self.password {
            client = client.with_password(password);
        }
        client
    }
}

/// The user and password of a URL are percent-encoded; the server wants them raw.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|pair| std::str::from_utf8(pair).ok());
        match (bytes[i], hex.and_then(|pair| u8::from_str_radix(pair, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[derive(Row, Serialize)]
struct PlayRow {
    play_id: [u8; 16],
    user_id: [u8; 16],
    track_id: [u8; 16],
    played_at_ms: i64,
    played_ms: u64,
    stream: u8,
}

impl From<&PlayFact> for PlayRow {
    fn from(play: &PlayFact) -> Self {
        Self {
            play_id: *play.play_id.as_bytes(),
            user_id: *play.user_id.as_bytes(),
            track_id: *play.track_id.as_bytes(),
            played_at_ms: play.played_at_ms,
            played_ms: play.played_ms,
            stream: u8::from(play.stream),
        }
    }
}

#[derive(Row, Serialize, Clone, PartialEq, Eq, Hash)]
struct ActivityRow {
    day_ms: i64,
    user_id: [u8; 16],
}

#[derive(Row, Serialize, Clone, PartialEq, Eq, Hash)]
struct DeletedTrackRow {
    track_id: [u8; 16],
}

#[derive(Row, Serialize)]
struct RequestRow {
    at_ms: i64,
    method: String,
    route: String,
    status: u16,
    duration_us: u64,
}

#[derive(Row, Deserialize)]
struct TrackRow {
    track_id: [u8; 16],
    plays: u64,
    streams: u64,
    listeners: u64,
}

#[derive(Row, Deserialize)]
struct PointRow {
    t_ms: i64,
    plays: u64,
    streams: u64,
    listeners: u64,
}

#[derive(Row, Deserialize)]
struct ActiveRow {
    t_ms: i64,
    active_users: u64,
}

#[derive(Row, Deserialize)]
struct RouteRow {
    method: String,
    route: String,
    requests: u64,
    errors: u64,
    p50_us: u64,
    p95_us: u64,
}

#[derive(Row, Deserialize)]
struct PlayIdRow {
    play_id: [u8; 16],
}

#[derive(Row, Deserialize)]
struct HistoryRow {
    play_id: [u8; 16],
    track_id: [u8; 16],
    played_at_ms: i64,
    played_ms: u64,
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use testkit::TestDatabase;

    use super::*;

    struct Fixture {
        warehouse: ClickHouseWarehouse,
        ledger: TestDatabase,
    }

    impl Fixture {
        /// A fresh ClickHouse database over `ledger`, migrated.
        async fn new(ledger: TestDatabase) -> Self {
            crate::store::open(ledger.pool().clone()).await.expect("the ledger migrates");
            let url = format!("{}/{}", testkit::clickhouse_url(), testkit::fresh_database_name());
            let warehouse =
                ClickHouseWarehouse::connect(&url, ledger.pool().clone()).await.unwrap_or_else(
                    |error| panic!("cannot reach ClickHouse (see scripts/test): {error}"),
                );
            warehouse.migrate().await.expect("the schema is created");
            // A second run finds everything there.
            warehouse.migrate().await.expect("migrating again changes nothing");
            Self { warehouse, ledger }
        }

        /// The same database and ledger behind a port nothing listens on.
        fn unreachable(&self) -> ClickHouseWarehouse {
            let url = format!("clickhouse://127.0.0.1:{}", testkit::free_port());
            let endpoint = Endpoint::parse(&url).expect("a valid URL");
            ClickHouseWarehouse::new(
                endpoint.client(),
                self.warehouse.database.clone(),
                self.ledger.pool().clone(),
            )
        }

        async fn counted_facts(&self) -> i64 {
            let sql = "SELECT COUNT(*) FROM counted_facts";
            match self.ledger.pool() {
                SqlPool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
                SqlPool::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            }
            .expect("the ledger answers")
        }

        async fn pending_facts(&self) -> i64 {
            let sql = "SELECT COUNT(*) FROM pending_facts";
            match self.ledger.pool() {
                SqlPool::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
                SqlPool::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            }
            .expect("the ledger answers")
        }

        async fn finish(self) {
            let drop = format!("DROP DATABASE IF EXISTS {}", quoted(&self.warehouse.database));
            self.warehouse.client.query(&drop).execute().await.expect("the database drops");
            self.ledger.finish().await;
        }
    }

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()
    }

    fn play(play_id: Uuid, user_id: Uuid, track_id: Uuid, played_at_ms: i64) -> PlayFact {
        PlayFact { play_id, user_id, track_id, played_at_ms, played_ms: 60_000, stream: true }
    }

    async fn redelivered_plays_count_once(ledger: TestDatabase) {
        let fixture = Fixture::new(ledger).await;
        let warehouse = &fixture.warehouse;
        let (user, track, at) = (Uuid::now_v7(), Uuid::now_v7(), ms("2026-11-25T13:45:00Z"));
        let plays: Vec<PlayFact> = (0..3).map(|_| play(Uuid::now_v7(), user, track, at)).collect();
        let mut delivered = plays.clone();
        delivered.push(plays[0]);

        assert_eq!(warehouse.record_plays(&delivered).await.unwrap(), 3);
        assert_eq!(warehouse.record_plays(&delivered).await.unwrap(), 0);
        let later = play(Uuid::now_v7(), user, track, at);
        assert_eq!(warehouse.record_plays(&[plays[1], later]).await.unwrap(), 1);

        let (page, total) = warehouse.history(user, 10, 0).await.unwrap();
        assert_eq!((page.len(), total), (4, 4));
        let (top, tracks) =
            warehouse.top_tracks(Bucketing::Hour.start_of(at), 10, 0).await.unwrap();
        assert_eq!(tracks, 1);
        assert_eq!((top[0].plays, top[0].streams, top[0].listeners), (4, 4, 1));

        let batch = Uuid::now_v7();
        let requests = [RequestFact {
            method: "GET".into(),
            route: "/v1/tracks/{id}".into(),
            status: 200,
            duration_us: 1_500,
            at_ms: at,
        }];
        assert!(warehouse.record_requests(batch, &requests).await.unwrap());
        assert!(!warehouse.record_requests(batch, &requests).await.unwrap());
        assert_eq!(warehouse.api_routes(at).await.unwrap()[0].requests, 1);
        fixture.finish().await;
    }

    #[tokio::test]
    async fn redelivered_plays_count_once_with_a_sqlite_ledger() {
        redelivered_plays_count_once(TestDatabase::sqlite().await).await;
    }

    #[tokio::test]
    async fn redelivered_plays_count_once_with_a_postgres_ledger() {
        redelivered_plays_count_once(TestDatabase::postgres().await).await;
    }

    /// The window a crash opens: the first attempt marked its plays pending and ClickHouse
    /// took (some of) them, but the claim never committed.
    async fn plays_inserted_before_their_claim_was_lost_count_once(ledger: TestDatabase) {
        let fixture = Fixture::new(ledger).await;
        let warehouse = &fixture.warehouse;
        let (user, track, at) = (Uuid::now_v7(), Uuid::now_v7(), ms("2026-11-25T13:45:00Z"));
        let plays: Vec<PlayFact> = (0..3).map(|_| play(Uuid::now_v7(), user, track, at)).collect();
        let ids: Vec<Uuid> = plays.iter().map(|play| play.play_id).collect();
        let interrupted = Ledger::mark_pending(&warehouse.ledger, &ids).await.unwrap();
        assert!(interrupted.is_empty(), "nothing was pending before");
        let reached: Vec<PlayRow> = plays[..2].iter().map(PlayRow::from).collect();
        warehouse.insert("plays", &reached).await.unwrap();
        assert_eq!(fixture.pending_facts().await, 3);

        assert_eq!(warehouse.record_plays(&plays).await.unwrap(), 3);
        let (page, total) = warehouse.history(user, 10, 0).await.unwrap();
        assert_eq!((page.len(), total), (3, 3), "each play once: {page:?}");
        let (top, _) = warehouse.top_tracks(Bucketing::Hour.start_of(at), 10, 0).await.unwrap();
        assert_eq!(top[0].plays, 3);
        assert_eq!((fixture.counted_facts().await, fixture.pending_facts().await), (3, 0));

        assert_eq!(warehouse.record_plays(&plays).await.unwrap(), 0);
        assert_eq!(warehouse.history(user, 10, 0).await.unwrap().1, 3);
        assert_eq!(fixture.pending_facts().await, 0, "a redelivery leaves nothing pending");
        fixture.finish().await;
    }

    #[tokio::test]
    async fn plays_inserted_before_their_claim_was_lost_count_once_with_a_sqlite_ledger() {
        plays_inserted_before_their_claim_was_lost_count_once(TestDatabase::sqlite().await).await;
    }

    #[tokio::test]
    async fn plays_inserted_before_their_claim_was_lost_count_once_with_a_postgres_ledger() {
        plays_inserted_before_their_claim_was_lost_count_once(TestDatabase::postgres().await).await;
    }

    #[tokio::test]
    async fn an_outage_leaves_the_ledger_unclaimed_so_a_retry_counts() {
        let fixture = Fixture::new(TestDatabase::postgres().await).await;
        let down = fixture.unreachable();
        let at = ms("2026-11-25T13:45:00Z");
        let plays: Vec<PlayFact> =
            (0..5).map(|_| play(Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), at)).collect();
        let batch = Uuid::now_v7();
        let requests = [RequestFact {
            method: "GET".into(),
            route: "/v1/me".into(),
            status: 200,
            duration_us: 900,
            at_ms: at,
        }];

        let error = down.record_plays(&plays).await.unwrap_err();
        assert!(matches!(error, WarehouseError::Unavailable(_)), "{error:?}");
        let error = down.record_requests(batch, &requests).await.unwrap_err();
        assert!(matches!(error, WarehouseError::Unavailable(_)), "{error:?}");
        assert!(matches!(down.ping().await, Err(WarehouseError::Unavailable(_))));
        assert_eq!(fixture.counted_facts().await, 0);

        assert_eq!(fixture.warehouse.record_plays(&plays).await.unwrap(), 5);
        assert!(fixture.warehouse.record_requests(batch, &requests).await.unwrap());
        assert_eq!(fixture.counted_facts().await, 6);
        fixture.finish().await;
    }

    #[tokio::test]
    async fn connecting_to_a_closed_port_is_unavailable() {
        let ledger = TestDatabase::sqlite().await;
        let url = format!("clickhouse://127.0.0.1:{}/tonearm_x", testkit::free_port());
        let result = ClickHouseWarehouse::connect(&url, ledger.pool().clone()).await;
        assert!(matches!(result, Err(WarehouseError::Unavailable(_))));
        ledger.finish().await;
    }

    #[test]
    fn urls_name_the_server_database_and_credentials() {
        let endpoint = Endpoint::parse("clickhouse://app:p%40ss@ch.internal/analytics").unwrap();
        assert_eq!(endpoint.http, "http://ch.internal:8123");
        assert_eq!(endpoint.database, "analytics");
        assert_eq!(endpoint.user.as_deref(), Some("app"));
        assert_eq!(endpoint.password.as_deref(), Some("p@ss"));
        let endpoint = Endpoint::parse("clickhouse://127.0.0.1:9123").unwrap();
        assert_eq!(
            (endpoint.http.as_str(), endpoint.database.as_str()),
            ("http://127.0.0.1:9123", DEFAULT_DATABASE)
        );
        assert!(endpoint.user.is_none() && endpoint.password.is_none());
        assert!(Endpoint::parse("http://127.0.0.1:8123").is_err());
        assert!(Endpoint::parse("clickhouse://127.0.0.1/bad-name").is_err());
        let Err(error) = Endpoint::parse("clickhouse://app:secret@h/x;y") else { panic!() };
        assert!(!error.to_string().contains("secret"));
    }
}

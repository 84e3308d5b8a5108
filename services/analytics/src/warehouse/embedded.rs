//! The embedded warehouse, for `tonearm up`: one SQLite file beside the other stores,
//! answering exactly what the ClickHouse warehouse answers.
//!
//! Why it is laid out as it is (schema in `migrations/warehouse/`):
//! - Raw plays are keyed by `play_id`: `INSERT OR IGNORE … RETURNING play_id` is the
//!   deduplication, across batches and restarts, and names the plays that were new without
//!   a read before the write.
//! - The rollups change in the same transaction, for the new plays only: plays and streams
//!   per (hour, track) and per (day, track); presence rows per (hour, track, user), per
//!   (hour, user) and per (day, user), which give exact distinct listeners without the raw
//!   plays; activity as a set of (day, user), fed by plays and by
//!   [`Warehouse::record_activity`].
//! - Ingest is bounded by pages rather than rows, since a commit writes every page it
//!   dirtied to the log. Rollups and presence lead with their hour or day, so plays as
//!   they arrive (recent ones) land at the end of those tables; only the user index, and
//!   the ids when a client's are not time-ordered, spread them over the file. A batch is
//!   folded in memory first, each rollup row written once per batch, and each table is
//!   written in its key order, walked forwards once rather than descended at random per
//!   play, by multi-row statements of a few fixed sizes, each prepared once.
//! - One connection writes (SQLite has one writer at a time anyway), so its page cache
//!   survives from batch to batch; queries have a pool of their own. The log is
//!   checkpointed every 256 MiB rather than every 4 MiB, since the next batches dirty
//!   many of the same pages again.
//! - Top tracks add the day rollup over a window's whole days to the hour rollup over the
//!   hours of its first day (those inside the window or, when they are more, the day's
//!   total less those before it: 12 hours of rows at most), and count distinct listeners
//!   for the page's tracks alone.
//! - Series over days, weeks or months join the rollups with the bucket boundaries that
//!   [`Bucketing`] computes, so no bucket arithmetic is written twice.
//! - Requests are kept one row each, since exact percentiles need every duration; they are
//!   grouped and [`crate::domain::quantile`] is taken in Rust.
//! - Deleted tracks are tombstones in `deleted_tracks`, which top tracks and history leave
//!   out with `NOT IN`: the table holds a row per deleted track, and the plays and rollups
//!   of those tracks are never rewritten.
//! - A forgotten user's plays and presence rows are given a random id used nowhere else,
//!   rather than deleted: the plays table stays the record of which play ids were counted
//!   (a redelivered play must not count again, nor bring the history back), and distinct
//!   listeners stay what ClickHouse, which keeps them as aggregate states, answers. The
//!   presence rows are found by the keys of the user's plays, every one of them written for
//!   one of those; their days of activity, which also come from likes and registrations,
//!   have an index by user.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    path::Path,
    sync::LazyLock,
    time::Duration,
};

use async_trait::async_trait;
use sqlx::{
    Sqlite, SqliteConnection, SqlitePool,
    query::Query,
    sqlite::{
        SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions,
        SqliteSynchronous,
    },
};
use uuid::Uuid;

use super::{Warehouse, WarehouseError};
use crate::domain::{
    ActivePoint, ActivityFact, Bucketing, DAY_MS, HOUR_MS, HistoryEntry, PlayFact, PlayPoint,
    RequestFact, RouteStats, TrackPlays, quantile,
};

/// Rows per insert statement: a batch of any size splits into the largest first, and each
/// size is one cached prepared statement per connection.
const ROWS_PER_STATEMENT: [usize; 10] = [512, 256, 128, 64, 32, 16, 8, 4, 2, 1];

/// The most buckets, or tracks, one read binds, well under SQLite's parameter limit.
const BINDS_PER_READ: usize = 400;

static PLAY_INSERTS: LazyLock<Inserts> = LazyLock::new(|| {
    Inserts::new(
        "INSERT OR IGNORE INTO plays \
         (play_id, user_id, track_id, played_at_ms, played_ms, stream)",
        6,
        " RETURNING play_id",
    )
});

static TRACK_HOUR_UPSERTS: LazyLock<Inserts> = LazyLock::new(|| {
    Inserts::new(
        "INSERT INTO track_hours (hour, track_id, plays, streams)",
        4,
        " ON CONFLICT (hour, track_id) DO UPDATE \
         SET plays = plays + excluded.plays, streams = streams + excluded.streams",
    )
});

static TRACK_DAY_UPSERTS: LazyLock<Inserts> = LazyLock::new(|| {
    Inserts::new(
        "INSERT INTO track_days (day, track_id, plays, streams)",
        4,
        " ON CONFLICT (day, track_id) DO UPDATE \
         SET plays = plays + excluded.plays, streams = streams + excluded.streams",
    )
});

static TRACK_LISTENER_INSERTS: LazyLock<Inserts> = LazyLock::new(|| {
    Inserts::new("INSERT OR IGNORE INTO track_listeners (hour, track_id, user_id)", 3, "")
});

static HOUR_LISTENER_INSERTS: LazyLock<Inserts> =
    LazyLock::new(|| Inserts::new("INSERT OR IGNORE INTO hour_listeners (hour, user_id)", 2, ""));

static DAY_LISTENER_INSERTS: LazyLock<Inserts> =
    LazyLock::new(|| Inserts::new("INSERT OR IGNORE INTO day_listeners (day, user_id)", 2, ""));

static ACTIVITY_INSERTS: LazyLock<Inserts> =
    LazyLock::new(|| Inserts::new("INSERT OR IGNORE INTO active_days (day, user_id)", 2, ""));

static DELETED_TRACK_INSERTS: LazyLock<Inserts> =
    LazyLock::new(|| Inserts::new("INSERT OR IGNORE INTO deleted_tracks (track_id)", 1, ""));

static REQUEST_INSERTS: LazyLock<Inserts> = LazyLock::new(|| {
    Inserts::new("INSERT INTO requests (at_ms, method, route, status, duration_us)", 5, "")
});

pub struct EmbeddedWarehouse {
    /// The one connection that writes: SQLite runs one writer at a time anyway, and a
    /// connection keeps its page cache only while no other connection writes.
    writer: SqlitePool,
    readers: SqlitePool,
}

impl EmbeddedWarehouse {
    /// Opens (creating when missing) the warehouse file at `path`, e.g.
    /// `<data_dir>/analytics-warehouse.db`.
    /// `cache_mib` bounds its writer's page cache, and an eighth of it each reader's.
    pub async fn open(path: &Path, cache_mib: u64) -> Result<Self, WarehouseError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                WarehouseError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        // The pragmas of the other embedded stores (`kernel::db`): a writer waits its turn,
        // and reads scan memory-mapped pages. No foreign keys: the warehouse has none.
        let cache = |mib: u64| format!("-{}", mib.max(1).saturating_mul(1024));
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("mmap_size", "268435456")
            .pragma("cache_size", cache(cache_mib / 8))
            .pragma("temp_store", "memory")
            // A batch of plays dirties pages all over the rollups, many of them again in
            // the next batches: checkpointing every 256 MiB of log rather than every 4 MiB
            // copies such a page into the database once for several commits.
            .pragma("wal_autocheckpoint", "65536")
            .pragma("journal_size_limit", "268435456");
        let open = |connections: u32, options: SqliteConnectOptions| async move {
            SqlitePoolOptions::new()
                .max_connections(connections)
                .connect_with(options)
                .await
                .map_err(|e| {
                    WarehouseError::Unavailable(format!("cannot open {}: {e}", path.display()))
                })
        };
        let writer = open(1, options.clone().pragma("cache_size", cache(cache_mib))).await?;
        let readers = open(8, options).await?;
        Ok(Self { writer, readers })
    }
}

#[async_trait]
impl Warehouse for EmbeddedWarehouse {
    async fn migrate(&self) -> Result<(), WarehouseError> {
        sqlx::migrate!("migrations/warehouse")
            .run(&self.writer)
            .await
            .map_err(|e| WarehouseError::Unavailable(format!("migrating the warehouse: {e}")))
    }

    async fn ping(&self) -> Result<(), WarehouseError> {
        sqlx::query("SELECT 1").execute(&self.readers).await.map_err(failed)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(plays = plays.len()))]
    async fn record_plays(&self, plays: &[PlayFact]) -> Result<u64, WarehouseError> {
        // In id order, each id once: the plays tree is walked forwards, and the first
        // delivery of an id within the batch is the one counted.
        let mut batch: Vec<&PlayFact> = plays.iter().collect();
        batch.sort_by_key(|play| play.play_id);
        batch.dedup_by_key(|play| play.play_id);
        if batch.is_empty() {
            return Ok(0);
        }
        let mut tx = self.writer.begin().await.map_err(failed)?;
        let mut new_ids = HashSet::with_capacity(batch.len());
        for (sql, chunk) in PLAY_INSERTS.split(&batch) {
            let query = chunk.iter().fold(sqlx::query_scalar::<_, Uuid>(sql), |query, play| {
                query
                    .bind(play.play_id)
                    .bind(play.user_id)
                    .bind(play.track_id)
                    .bind(play.played_at_ms)
                    .bind(i64::try_from(play.played_ms).unwrap_or(i64::MAX))
                    .bind(play.stream)
            });
            new_ids.extend(query.fetch_all(&mut *tx).await.map_err(failed)?);
        }
        let rollups = Rollups::of(batch.iter().filter(|play| new_ids.contains(&play.play_id)));
        rollups.write(&mut tx).await.map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(new_ids.len() as u64)
    }

    #[tracing::instrument(skip_all, fields(facts = activity.len()))]
    async fn record_activity(&self, activity: &[ActivityFact]) -> Result<(), WarehouseError> {
        let days: Vec<(i64, Uuid)> = activity
            .iter()
            .map(|fact| (fact.at_ms.div_euclid(DAY_MS), fact.user_id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if days.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await.map_err(failed)?;
        ACTIVITY_INSERTS
            .run(&mut tx, &days, |query, (day, user_id)| query.bind(*day).bind(*user_id))
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)
    }

    #[tracing::instrument(skip_all, fields(%batch_id, requests = requests.len()))]
    async fn record_requests(
        &self,
        batch_id: Uuid,
        requests: &[RequestFact],
    ) -> Result<bool, WarehouseError> {
        let mut tx = self.writer.begin().await.map_err(failed)?;
        let first = sqlx::query("INSERT OR IGNORE INTO request_batches (batch_id) VALUES (?)")
            .bind(batch_id)
            .execute(&mut *tx)
            .await
            .map_err(failed)?
            .rows_affected()
            == 1;
        if !first {
            return Ok(false);
        }
        REQUEST_INSERTS
            .run(&mut tx, requests, |query, request| {
                query
                    .bind(request.at_ms)
                    .bind(request.method.as_str())
                    .bind(request.route.as_str())
                    .bind(request.status)
                    .bind(i64::try_from(request.duration_us).unwrap_or(i64::MAX))
            })
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(true)
    }

    #[tracing::instrument(skip_all, fields(from_ms, limit, offset))]
    async fn top_tracks(
        &self,
        from_ms: i64,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<TrackPlays>, u64), WarehouseError> {
        // Windows start on an hour (a time inside one counts from its start). The day
        // rollup gives whole days, and the hour rollup the hours of the first day: those
        // inside the window added to the days after it when they are fewer, else those
        // before the window taken from that day's total. At most 12 hours of rows.
        let from_hour = from_ms.div_euclid(HOUR_MS);
        let day = from_hour.div_euclid(24);
        let (first_day, sign, hours) = if from_hour - day * 24 <= 12 {
            (day, -1, (day * 24, from_hour))
        } else {
            (day + 1, 1, (from_hour, (day + 1) * 24))
        };
        let counts = "WITH counts (track_id, plays, streams) AS (
                SELECT track_id, SUM(plays), SUM(streams) FROM (
                    SELECT track_id, plays, streams FROM track_days WHERE day >= ?1
                    UNION ALL
                    SELECT track_id, ?2 * plays, ?2 * streams FROM track_hours
                    WHERE hour >= ?3 AND hour < ?4
                ) WHERE track_id NOT IN (SELECT track_id FROM deleted_tracks)
                GROUP BY track_id HAVING SUM(plays) > 0
            )";
        let mut tx = self.readers.begin().await.map_err(failed)?;
        let page = format!(
            "{counts} SELECT track_id, plays, streams, COUNT(*) OVER () FROM counts
             ORDER BY plays DESC, track_id LIMIT ?5 OFFSET ?6"
        );
        let rows: Vec<(Uuid, i64, i64, i64)> = sqlx::query_as(&page)
            .bind(first_day)
            .bind(sign)
            .bind(hours.0)
            .bind(hours.1)
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut *tx)
            .await
            .map_err(failed)?;
        let total = match rows.first() {
            Some(&(_, _, _, total)) => total,
            // A page past the end still says how many tracks there are.
            None => {
                let total = format!("{counts} SELECT COUNT(*) FROM counts");
                sqlx::query_scalar(&total)
                    .bind(first_day)
                    .bind(sign)
                    .bind(hours.0)
                    .bind(hours.1)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(failed)?
            }
        };

        // Presence is hour first, so that plays land at the end of the table; a track's
        // listeners are read hour by hour, the hours found by a seek each.
        let mut listeners = HashMap::with_capacity(rows.len());
        for &(track_id, ..) in &rows {
            let counted: i64 = sqlx::query_scalar(
                "WITH RECURSIVE hours (hour) AS (
                     SELECT MIN(hour) FROM track_listeners WHERE hour >= ?1
                     UNION ALL
                     SELECT (SELECT MIN(hour) FROM track_listeners WHERE hour > hours.hour)
                     FROM hours WHERE hours.hour IS NOT NULL
                 )
                 SELECT COUNT(DISTINCT l.user_id) FROM hours
                 JOIN track_listeners AS l ON l.hour = hours.hour AND l.track_id = ?2",
            )
            .bind(from_hour)
            .bind(track_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(failed)?;
            listeners.insert(track_id, counted);
        }
        tx.commit().await.map_err(failed)?;

        let tracks = rows
            .into_iter()
            .map(|(track_id, plays, streams, _)| {
                Ok(TrackPlays {
                    track_id,
                    plays: count(plays)?,
                    streams: count(streams)?,
                    listeners: count(listeners.get(&track_id).copied().unwrap_or(0))?,
                })
            })
            .collect::<Result<_, WarehouseError>>()?;
        Ok((tracks, count(total)?))
    }

    #[tracing::instrument(skip_all, fields(?bucketing, from_ms, to_ms))]
    async fn play_series(
        &self,
        bucketing: Bucketing,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<PlayPoint>, WarehouseError> {
        let mut tx = self.readers.begin().await.map_err(failed)?;
        let (plays, listeners): (Vec<(i64, i64, i64)>, Vec<(i64, i64)>) = match bucketing {
            Bucketing::Hour => {
                let first = bucketing.start_of(from_ms).div_euclid(HOUR_MS);
                let last = to_ms.div_euclid(HOUR_MS);
                let plays = sqlx::query_as(
                    "SELECT hour * 3600000, SUM(plays), SUM(streams) FROM track_hours
                     WHERE hour >= ? AND hour <= ? GROUP BY hour",
                )
                .bind(first)
                .bind(last)
                .fetch_all(&mut *tx)
                .await
                .map_err(failed)?;
                let listeners = sqlx::query_as(
                    "SELECT hour * 3600000, COUNT(*) FROM hour_listeners
                     WHERE hour >= ? AND hour <= ? GROUP BY hour",
                )
                .bind(first)
                .bind(last)
                .fetch_all(&mut *tx)
                .await
                .map_err(failed)?;
                (plays, listeners)
            }
            Bucketing::Day | Bucketing::Week | Bucketing::Month => {
                let mut plays = Vec::new();
                let listeners =
                    users_per_bucket(&mut tx, "day_listeners", bucketing, from_ms, to_ms)
                        .await
                        .map_err(failed)?;
                for buckets in day_buckets(bucketing, from_ms, to_ms).chunks(BINDS_PER_READ) {
                    let sql = format!(
                        "{} SELECT b.first_day * 86400000, SUM(t.plays), SUM(t.streams)
                         FROM buckets AS b
                         JOIN track_days AS t ON t.day >= b.first_day AND t.day < b.end_day
                         GROUP BY b.first_day",
                        buckets_cte(buckets.len())
                    );
                    plays.extend(
                        bind_buckets(sqlx::query_as::<_, (i64, i64, i64)>(&sql), buckets)
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(failed)?,
                    );
                }
                (plays, listeners)
            }
        };
        tx.commit().await.map_err(failed)?;

        let listeners: HashMap<i64, i64> = listeners.into_iter().collect();
        plays
            .into_iter()
            .map(|(t_ms, plays, streams)| {
                Ok(PlayPoint {
                    t_ms,
                    plays: count(plays)?,
                    streams: count(streams)?,
                    listeners: count(listeners.get(&t_ms).copied().unwrap_or(0))?,
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(?bucketing, from_ms, to_ms))]
    async fn active_users(
        &self,
        bucketing: Bucketing,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<ActivePoint>, WarehouseError> {
        if bucketing == Bucketing::Hour {
            return Err(WarehouseError::Unavailable(
                "active users are kept per day: hourly buckets cannot be answered".into(),
            ));
        }
        let mut connection = self.readers.acquire().await.map_err(failed)?;
        users_per_bucket(&mut connection, "active_days", bucketing, from_ms, to_ms)
            .await
            .map_err(failed)?
            .into_iter()
            .map(|(t_ms, active_users)| {
                Ok(ActivePoint { t_ms, active_users: count(active_users)? })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(from_ms))]
    async fn api_routes(&self, from_ms: i64) -> Result<Vec<RouteStats>, WarehouseError> {
        let rows: Vec<(String, String, u16, i64, i64)> = sqlx::query_as(
            "SELECT method, route, status, duration_us, at_ms FROM requests WHERE at_ms >= ?",
        )
        .bind(from_ms)
        .fetch_all(&self.readers)
        .await
        .map_err(failed)?;

        let mut routes: HashMap<(String, String), (Vec<u64>, u64)> = HashMap::new();
        for (method, route, status, duration_us, at_ms) in rows {
            let request =
                RequestFact { method, route, status, duration_us: count(duration_us)?, at_ms };
            let (durations, errors) =
                routes.entry((request.method.clone(), request.route.clone())).or_default();
            durations.push(request.duration_us);
            *errors += u64::from(request.is_error());
        }
        let mut stats: Vec<RouteStats> = routes
            .into_iter()
            .map(|((method, route), (mut durations, errors))| {
                durations.sort_unstable();
                RouteStats {
                    method,
                    route,
                    requests: durations.len() as u64,
                    errors,
                    p50_us: quantile(&durations, 0.5),
                    p95_us: quantile(&durations, 0.95),
                }
            })
            .collect();
        stats.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| a.method.cmp(&b.method))
                .then_with(|| a.route.cmp(&b.route))
        });
        Ok(stats)
    }

    #[tracing::instrument(skip_all, fields(%user_id, limit, offset))]
    async fn history(
        &self,
        user_id: Uuid,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<HistoryEntry>, u64), WarehouseError> {
        let mut tx = self.readers.begin().await.map_err(failed)?;
        let rows: Vec<(Uuid, Uuid, i64, i64)> = sqlx::query_as(
            "SELECT play_id, track_id, played_at_ms, played_ms FROM plays
             WHERE user_id = ? AND track_id NOT IN (SELECT track_id FROM deleted_tracks)
             ORDER BY played_at_ms DESC, play_id DESC LIMIT ? OFFSET ?",
        )
        .bind(user_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed)?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM plays
             WHERE user_id = ? AND track_id NOT IN (SELECT track_id FROM deleted_tracks)",
        )
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        let entries = rows
            .into_iter()
            .map(|(play_id, track_id, played_at_ms, played_ms)| {
                Ok(HistoryEntry { play_id, track_id, played_at_ms, played_ms: count(played_ms)? })
            })
            .collect::<Result<_, WarehouseError>>()?;
        Ok((entries, count(total)?))
    }

    #[tracing::instrument(skip_all, fields(tracks = track_ids.len()))]
    async fn forget_tracks(&self, track_ids: &[Uuid]) -> Result<(), WarehouseError> {
        let ids: Vec<Uuid> =
            track_ids.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await.map_err(failed)?;
        DELETED_TRACK_INSERTS
            .run(&mut tx, &ids, |query, track_id| query.bind(*track_id))
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)
    }

    #[tracing::instrument(skip_all, fields(%user_id))]
    async fn forget_user(&self, user_id: Uuid) -> Result<(), WarehouseError> {
        // Random, and kept nowhere: the rows count as someone's, but as no one's known.
        let stranger = Uuid::new_v4();
        // Begins with a write, so that the transaction holds the write lock from its start
        // (a deferred one that read first could not take it if another writer got in).
        let mut tx = self.writer.begin().await.map_err(failed)?;
        let plays: Vec<(Uuid, i64)> = sqlx::query_as(
            "UPDATE plays SET user_id = ?1 WHERE user_id = ?2 RETURNING track_id, played_at_ms",
        )
        .bind(stranger)
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed)?;
        // The presence rows the user's plays wrote, by their keys.
        let mut track_hours = BTreeSet::new();
        let mut hours = BTreeSet::new();
        let mut days = BTreeSet::new();
        for &(track_id, played_at_ms) in &plays {
            let hour = played_at_ms.div_euclid(HOUR_MS);
            track_hours.insert((hour, track_id));
            hours.insert(hour);
            days.insert(played_at_ms.div_euclid(DAY_MS));
        }
        for (hour, track_id) in track_hours {
            sqlx::query(
                "UPDATE track_listeners SET user_id = ?1
                 WHERE hour = ?2 AND track_id = ?3 AND user_id = ?4",
            )
            .bind(stranger)
            .bind(hour)
            .bind(track_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        }
        for (table, column, buckets) in
            [("hour_listeners", "hour", hours), ("day_listeners", "day", days)]
        {
            let sql =
                format!("UPDATE {table} SET user_id = ?1 WHERE {column} = ?2 AND user_id = ?3");
            for bucket in buckets {
                sqlx::query(&sql)
                    .bind(stranger)
                    .bind(bucket)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?;
            }
        }
        sqlx::query("DELETE FROM active_days WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)
    }
}

/// Multi-row `INSERT` statements for one table, one per size of
/// [`ROWS_PER_STATEMENT`].
struct Inserts {
    statements: Vec<(usize, String)>,
}

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;

impl Inserts {
    /// `head` up to `VALUES`, rows of `columns` parameters, then `tail` (an upsert or
    /// `RETURNING` clause).
    fn new(head: &str, columns: usize, tail: &str) -> Self {
        let row = format!("({})", marks(columns));
        let statements = ROWS_PER_STATEMENT
            .iter()
            .map(|&rows| {
                (rows, format!("{head} VALUES {}{tail}", vec![row.as_str(); rows].join(", ")))
            })
            .collect();
        Self { statements }
    }

    /// `rows` cut into chunks, each with the statement that inserts it.
    fn split<'a, T>(&'a self, rows: &'a [T]) -> Vec<(&'a str, &'a [T])> {
        let mut chunks = Vec::new();
        let mut rest = rows;
        for (size, sql) in &self.statements {
            while rest.len() >= *size {
                let (chunk, tail) = rest.split_at(*size);
                chunks.push((sql.as_str(), chunk));
                rest = tail;
            }
        }
        chunks
    }

    /// Inserts every row, binding each with `bind`.
    async fn run<'q, T>(
        &'q self,
        connection: &mut SqliteConnection,
        rows: &'q [T],
        bind: impl Fn(SqliteQuery<'q>, &'q T) -> SqliteQuery<'q>,
    ) -> Result<(), sqlx::Error> {
        for (sql, chunk) in self.split(rows) {
            chunk.iter().fold(sqlx::query(sql), &bind).execute(&mut *connection).await?;
        }
        Ok(())
    }
}

/// What a batch of new plays adds to the rollups, in each table's key order, so that
/// every table is walked forwards once.
#[derive(Default)]
struct Rollups {
    track_hours: BTreeMap<(i64, Uuid), (i64, i64)>,
    track_days: BTreeMap<(i64, Uuid), (i64, i64)>,
    track_listeners: BTreeSet<(i64, Uuid, Uuid)>,
    hour_listeners: BTreeSet<(i64, Uuid)>,
    day_listeners: BTreeSet<(i64, Uuid)>,
    active_days: BTreeSet<(i64, Uuid)>,
}

impl Rollups {
    fn of<'a>(plays: impl Iterator<Item = &'a &'a PlayFact>) -> Self {
        let mut rollups = Self::default();
        for play in plays {
            let hour = play.played_at_ms.div_euclid(HOUR_MS);
            let day = play.played_at_ms.div_euclid(DAY_MS);
            let stream = i64::from(play.stream);
            for counts in [
                rollups.track_hours.entry((hour, play.track_id)).or_default(),
                rollups.track_days.entry((day, play.track_id)).or_default(),
            ] {
                counts.0 += 1;
                counts.1 += stream;
            }
            rollups.track_listeners.insert((hour, play.track_id, play.user_id));
            rollups.hour_listeners.insert((hour, play.user_id));
            rollups.day_listeners.insert((day, play.user_id));
            rollups.active_days.insert((day, play.user_id));
        }
        rollups
    }

    async fn write(&self, connection: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        for (inserts, counts) in
            [(&*TRACK_HOUR_UPSERTS, &self.track_hours), (&*TRACK_DAY_UPSERTS, &self.track_days)]
        {
            let rows: Vec<_> = counts.iter().collect();
            inserts
                .run(connection, &rows, |query, ((bucket, track_id), (plays, streams))| {
                    query.bind(*bucket).bind(*track_id).bind(*plays).bind(*streams)
                })
                .await?;
        }
        let rows: Vec<_> = self.track_listeners.iter().collect();
        TRACK_LISTENER_INSERTS
            .run(connection, &rows, |query, (hour, track_id, user_id)| {
                query.bind(*hour).bind(*track_id).bind(*user_id)
            })
            .await?;
        for (inserts, users) in [
            (&*HOUR_LISTENER_INSERTS, &self.hour_listeners),
            (&*DAY_LISTENER_INSERTS, &self.day_listeners),
            (&*ACTIVITY_INSERTS, &self.active_days),
        ] {
            let rows: Vec<_> = users.iter().collect();
            inserts
                .run(connection, &rows, |query, (bucket, user_id)| {
                    query.bind(*bucket).bind(*user_id)
                })
                .await?;
        }
        Ok(())
    }
}

/// `count` comma-separated parameter marks.
fn marks(count: usize) -> String {
    vec!["?"; count].join(", ")
}

/// The buckets starting in `[bucketing.start_of(from_ms), to_ms]`, as half-open ranges of
/// day numbers; every day-based bucket starts and ends at midnight.
fn day_buckets(bucketing: Bucketing, from_ms: i64, to_ms: i64) -> Vec<(i64, i64)> {
    bucketing
        .starts(from_ms, to_ms)
        .into_iter()
        .map(|start| (start.div_euclid(DAY_MS), bucketing.next(start).div_euclid(DAY_MS)))
        .collect()
}

/// Distinct users per bucket of `table`, whose rows are (day, user) pairs; only buckets
/// with users, as (start, users).
async fn users_per_bucket(
    connection: &mut SqliteConnection,
    table: &'static str,
    bucketing: Bucketing,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let buckets = day_buckets(bucketing, from_ms, to_ms);
    if bucketing == Bucketing::Day {
        // A day's rows are its distinct users already: counting them needs no set.
        let (Some(&(first, _)), Some(&(_, end))) = (buckets.first(), buckets.last()) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT day * 86400000, COUNT(*) FROM {table} WHERE day >= ? AND day < ? GROUP BY day"
        );
        return sqlx::query_as(&sql).bind(first).bind(end).fetch_all(&mut *connection).await;
    }
    let mut counted = Vec::new();
    for buckets in buckets.chunks(BINDS_PER_READ) {
        let sql = format!(
            "{} SELECT b.first_day * 86400000, COUNT(DISTINCT t.user_id)
             FROM buckets AS b JOIN {table} AS t ON t.day >= b.first_day AND t.day < b.end_day
             GROUP BY b.first_day",
            buckets_cte(buckets.len())
        );
        counted.extend(
            bind_buckets(sqlx::query_as::<_, (i64, i64)>(&sql), buckets)
                .fetch_all(&mut *connection)
                .await?,
        );
    }
    Ok(counted)
}

fn buckets_cte(count: usize) -> String {
    format!("WITH buckets (first_day, end_day) AS (VALUES {})", vec!["(?, ?)"; count].join(", "))
}

fn bind_buckets<'q, O>(
    mut query: sqlx::query::QueryAs<'q, Sqlite, O, SqliteArguments<'q>>,
    buckets: &[(i64, i64)],
) -> sqlx::query::QueryAs<'q, Sqlite, O, SqliteArguments<'q>> {
    for &(first_day, end_day) in buckets {
        query = query.bind(first_day).bind(end_day);
    }
    query
}

/// A count or duration the engine gave back, which is never negative unless the file
/// was tampered with.
fn count(value: i64) -> Result<u64, WarehouseError> {
    u64::try_from(value).map_err(|_| WarehouseError::Corrupt(format!("a negative count: {value}")))
}

fn failed(error: sqlx::Error) -> WarehouseError {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. } => WarehouseError::Corrupt(error.to_string()),
        error => WarehouseError::Unavailable(error.to_string()),
    }
}

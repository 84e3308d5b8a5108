//! The embedded warehouse, for `tonearm up`: one SQLite file beside the other stores,
//! answering exactly what the ClickHouse warehouse answers.
//!
//! Why it is laid out as it is (schema in `migrations/warehouse/`):
//! - Raw plays are keyed by `play_id`, so `INSERT OR IGNORE` is the deduplication, within
//!   a batch as across restarts, with no read before the write.
//! - Rollups are kept by a trigger on that insert, so they change in the same transaction
//!   and only for rows the insert really wrote; no statement per play leaves the engine.
//!   Plays and streams are summed per (hour, track) and per (day, track); who listened is
//!   kept as presence rows per (track, hour, user) and per (hour, user), which answer
//!   exact distinct counts over any whole hours without touching the raw plays; activity
//!   is a set of (day, user) fed by the trigger and by [`Warehouse::record_activity`].
//! - Top tracks over a window read the day rollup for its whole days and the hour rollup
//!   for the partial first day only, a few hundred rows per track at most for 30 days,
//!   and count distinct listeners for the page's tracks alone.
//! - Series over days, weeks or months join the rollups with the bucket boundaries that
//!   [`Bucketing`] computes, so no bucket arithmetic is written twice.
//! - Writes are multi-row statements of a few fixed sizes (powers of two), each prepared
//!   once per connection, in one transaction per call: a batch of 10,000 plays is about
//!   twenty statements.
//! - Requests are kept one row each, since percentiles need every duration; grouping and
//!   percentiles are taken in Rust by [`crate::domain::quantile`].

use std::{
    collections::{BTreeSet, HashMap},
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
         (play_id, user_id, track_id, played_at_ms, played_ms, stream) VALUES ",
        6,
    )
});

static ACTIVITY_INSERTS: LazyLock<Inserts> =
    LazyLock::new(|| Inserts::new("INSERT OR IGNORE INTO active_days (day, user_id) VALUES ", 2));

static REQUEST_INSERTS: LazyLock<Inserts> = LazyLock::new(|| {
    Inserts::new("INSERT INTO requests (at_ms, method, route, status, duration_us) VALUES ", 5)
});

pub struct EmbeddedWarehouse {
    pool: SqlitePool,
}

impl EmbeddedWarehouse {
    /// Opens (creating when missing) the warehouse file at `path`, e.g.
    /// `<data_dir>/analytics-warehouse.db`.
    pub async fn open(path: &Path) -> Result<Self, WarehouseError> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                WarehouseError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        // The pragmas of the other embedded stores (`kernel::db`): one writer at a time
        // waits its turn, and reads scan memory-mapped pages and a large page cache. No
        // foreign keys: the warehouse has none.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .pragma("mmap_size", "268435456")
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory");
        let pool =
            SqlitePoolOptions::new().max_connections(8).connect_with(options).await.map_err(
                |e| WarehouseError::Unavailable(format!("cannot open {}: {e}", path.display())),
            )?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Warehouse for EmbeddedWarehouse {
    async fn migrate(&self) -> Result<(), WarehouseError> {
        sqlx::migrate!("migrations/warehouse")
            .run(&self.pool)
            .await
            .map_err(|e| WarehouseError::Unavailable(format!("migrating the warehouse: {e}")))
    }

    async fn ping(&self) -> Result<(), WarehouseError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(failed)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(plays = plays.len()))]
    async fn record_plays(&self, plays: &[PlayFact]) -> Result<u64, WarehouseError> {
        if plays.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let new = PLAY_INSERTS
            .run(&mut tx, plays, |query, play| {
                query
                    .bind(play.play_id)
                    .bind(play.user_id)
                    .bind(play.track_id)
                    .bind(play.played_at_ms)
                    .bind(i64::try_from(play.played_ms).unwrap_or(i64::MAX))
                    .bind(play.stream)
            })
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(new)
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
        let mut tx = self.pool.begin().await.map_err(failed)?;
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
        let mut tx = self.pool.begin().await.map_err(failed)?;
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
        // Windows start on an hour: whole days come from the day rollup, the hours before
        // the first of them from the hour rollup.
        let from_hour = from_ms.div_euclid(HOUR_MS);
        let first_day = (from_hour + 23).div_euclid(24);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let rows: Vec<(Uuid, i64, i64, i64)> = sqlx::query_as(
            "WITH counts (track_id, plays, streams) AS (
                 SELECT track_id, SUM(plays), SUM(streams) FROM (
                     SELECT track_id, plays, streams FROM track_days WHERE day >= ?1
                     UNION ALL
                     SELECT track_id, plays, streams FROM track_hours
                     WHERE hour >= ?2 AND hour < ?1 * 24
                 ) GROUP BY track_id
             )
             SELECT track_id, plays, streams, COUNT(*) OVER () FROM counts
             ORDER BY plays DESC, track_id
             LIMIT ?3 OFFSET ?4",
        )
        .bind(first_day)
        .bind(from_hour)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed)?;
        let total = match rows.first() {
            Some(&(_, _, _, total)) => total,
            // A page past the end still says how many tracks there are.
            None => sqlx::query_scalar(
                "SELECT COUNT(*) FROM (
                     SELECT track_id FROM track_days WHERE day >= ?1
                     UNION
                     SELECT track_id FROM track_hours WHERE hour >= ?2 AND hour < ?1 * 24
                 )",
            )
            .bind(first_day)
            .bind(from_hour)
            .fetch_one(&mut *tx)
            .await
            .map_err(failed)?,
        };

        let mut listeners = HashMap::with_capacity(rows.len());
        for page in rows.chunks(BINDS_PER_READ) {
            let sql = format!(
                "SELECT track_id, COUNT(DISTINCT user_id) FROM track_listeners
                 WHERE track_id IN ({}) AND hour >= ? GROUP BY track_id",
                marks(page.len())
            );
            let mut query = sqlx::query_as::<_, (Uuid, i64)>(&sql);
            for (track_id, ..) in page {
                query = query.bind(*track_id);
            }
            let counted = query.bind(from_hour).fetch_all(&mut *tx).await.map_err(failed)?;
            listeners.extend(counted);
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
        let mut tx = self.pool.begin().await.map_err(failed)?;
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
                let mut listeners = Vec::new();
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
                    let sql = format!(
                        "{} SELECT b.first_day * 86400000, COUNT(DISTINCT l.user_id)
                         FROM buckets AS b
                         JOIN hour_listeners AS l
                           ON l.hour >= b.first_day * 24 AND l.hour < b.end_day * 24
                         GROUP BY b.first_day",
                        buckets_cte(buckets.len())
                    );
                    listeners.extend(
                        bind_buckets(sqlx::query_as::<_, (i64, i64)>(&sql), buckets)
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
        let mut points = Vec::new();
        for buckets in day_buckets(bucketing, from_ms, to_ms).chunks(BINDS_PER_READ) {
            let sql = format!(
                "{} SELECT b.first_day * 86400000, COUNT(DISTINCT a.user_id)
                 FROM buckets AS b
                 JOIN active_days AS a ON a.day >= b.first_day AND a.day < b.end_day
                 GROUP BY b.first_day",
                buckets_cte(buckets.len())
            );
            let rows: Vec<(i64, i64)> = bind_buckets(sqlx::query_as(&sql), buckets)
                .fetch_all(&self.pool)
                .await
                .map_err(failed)?;
            for (t_ms, active_users) in rows {
                points.push(ActivePoint { t_ms, active_users: count(active_users)? });
            }
        }
        Ok(points)
    }

    #[tracing::instrument(skip_all, fields(from_ms))]
    async fn api_routes(&self, from_ms: i64) -> Result<Vec<RouteStats>, WarehouseError> {
        let rows: Vec<(String, String, u16, i64, i64)> = sqlx::query_as(
            "SELECT method, route, status, duration_us, at_ms FROM requests WHERE at_ms >= ?",
        )
        .bind(from_ms)
        .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let rows: Vec<(Uuid, Uuid, i64, i64)> = sqlx::query_as(
            "SELECT play_id, track_id, played_at_ms, played_ms FROM plays
             WHERE user_id = ? ORDER BY played_at_ms DESC, play_id DESC LIMIT ? OFFSET ?",
        )
        .bind(user_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed)?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM plays WHERE user_id = ?")
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
}

/// Multi-row `INSERT` statements for one table, one per size of
/// [`ROWS_PER_STATEMENT`].
struct Inserts {
    statements: Vec<(usize, String)>,
}

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;

impl Inserts {
    fn new(head: &str, columns: usize) -> Self {
        let row = format!("({})", marks(columns));
        let statements = ROWS_PER_STATEMENT
            .iter()
            .map(|&rows| (rows, format!("{head}{}", vec![row.as_str(); rows].join(", "))))
            .collect();
        Self { statements }
    }

    /// Inserts every row, binding each with `bind`; returns how many were written.
    async fn run<'q, T>(
        &'q self,
        connection: &mut SqliteConnection,
        rows: &'q [T],
        bind: impl Fn(SqliteQuery<'q>, &'q T) -> SqliteQuery<'q>,
    ) -> Result<u64, sqlx::Error> {
        let mut written = 0;
        let mut rest = rows;
        for (size, sql) in &self.statements {
            while rest.len() >= *size {
                let (chunk, tail) = rest.split_at(*size);
                let query = chunk.iter().fold(sqlx::query(sql), &bind);
                written += query.execute(&mut *connection).await?.rows_affected();
                rest = tail;
            }
        }
        Ok(written)
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

//! The SQL both adapters run. `sql_store!` implements
//! [`PlaylistStore`](super::PlaylistStore) and [`OutboxStore`](bus::outbox::OutboxStore)
//! for an adapter type holding a `pool` field of its engine's pool type.
//!
//! A change to a track list takes the playlist's row first (the version bump), so changes
//! to one playlist queue up behind each other: on PostgreSQL behind the row lock, on
//! SQLite behind the single writer (a transaction that writes first waits out
//! `busy_timeout`; one that read first could only fail). Every write transaction here
//! therefore begins with a write.
//!
//! `UNIQUE (playlist_id, sort_key)` is checked row by row on both engines, so new keys are
//! written in an order that never collides (see [`key_writes`]) instead of relaxing it.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::{Entry, Like, Playlist, TrackSummary};

/// A playlist's columns, `p.`-qualified, as [`PlaylistRow`] reads them.
pub(super) const PLAYLIST_COLUMNS: &str = "p.id, p.owner_id, p.name, p.description, p.public,
    p.version, p.tracks_total, p.created_at, p.updated_at";

/// The same, unqualified, for `RETURNING`.
pub(super) const PLAYLIST_RETURNING: &str = "id, owner_id, name, description, public, version,
    tracks_total, created_at, updated_at";

/// A summary's columns, `s.`-qualified, as [`SummaryRow`] reads them.
pub(super) const SUMMARY_COLUMNS: &str = "s.track_id, s.title, s.artist_id, s.artist_name,
    s.album_id, s.album_title, s.duration_ms";

/// The most rows one statement writes or matches, keeping well under both engines' limits
/// on parameters (32,766 on SQLite, 65,535 on PostgreSQL).
pub(super) const CHUNK: usize = 250;

#[derive(sqlx::FromRow)]
pub(super) struct PlaylistRow {
    id: Uuid,
    owner_id: Uuid,
    name: String,
    description: Option<String>,
    public: bool,
    version: i64,
    tracks_total: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PlaylistRow> for Playlist {
    type Error = StoreError;
    fn try_from(row: PlaylistRow) -> Result<Self, StoreError> {
        Ok(Self {
            tracks_total: u64::try_from(row.tracks_total).map_err(|_| {
                StoreError::Corrupt(format!(
                    "playlist {}: tracks total {}",
                    row.id, row.tracks_total
                ))
            })?,
            id: row.id,
            owner_id: row.owner_id,
            name: row.name,
            description: row.description,
            public: row.public,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A playlist as `playlists_of` lists it: with whether the user follows it (rather than
/// owns it) and the time it is listed by.
#[derive(sqlx::FromRow)]
pub(super) struct ListedRow {
    #[sqlx(flatten)]
    playlist: PlaylistRow,
    followed: bool,
}

impl TryFrom<ListedRow> for (Playlist, bool) {
    type Error = StoreError;
    fn try_from(row: ListedRow) -> Result<Self, StoreError> {
        Ok((row.playlist.try_into()?, row.followed))
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct SummaryRow {
    track_id: Uuid,
    title: String,
    artist_id: Uuid,
    artist_name: String,
    album_id: Uuid,
    album_title: String,
    duration_ms: i64,
}

impl TryFrom<SummaryRow> for TrackSummary {
    type Error = StoreError;
    fn try_from(row: SummaryRow) -> Result<Self, StoreError> {
        Ok(Self {
            duration_ms: u64::try_from(row.duration_ms).map_err(|_| {
                StoreError::Corrupt(format!("track {}: duration {}", row.track_id, row.duration_ms))
            })?,
            id: row.track_id,
            title: row.title,
            artist_id: row.artist_id,
            artist_name: row.artist_name,
            album_id: row.album_id,
            album_title: row.album_title,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EntryRow {
    #[sqlx(flatten)]
    track: SummaryRow,
    added_at: DateTime<Utc>,
}

impl EntryRow {
    pub(super) fn into_entry(self, position: u64) -> Result<Entry, StoreError> {
        Ok(Entry { position, track: self.track.try_into()?, added_at: self.added_at })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct LikeRow {
    #[sqlx(flatten)]
    track: SummaryRow,
    liked_at: DateTime<Utc>,
}

impl TryFrom<LikeRow> for Like {
    type Error = StoreError;
    fn try_from(row: LikeRow) -> Result<Self, StoreError> {
        Ok(Self { track: row.track.try_into()?, liked_at: row.liked_at })
    }
}

/// A `COUNT(*)` or a stored total, never negative.
pub(super) fn count(raw: i64) -> u64 {
    u64::try_from(raw).unwrap_or_default()
}

/// An unsigned number as the `BIGINT` column it is stored in.
pub(super) fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A number of tracks as the `INTEGER` column `tracks_total`.
pub(super) fn int(value: usize) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// `ids` without repeats, in their first order.
pub(super) fn distinct(ids: &[Uuid]) -> Vec<Uuid> {
    let mut seen = HashSet::new();
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// The updates that give entries new sort keys, as steps to run in order, each a list of
/// `(entry_id, key)` whose rows may be written in any order.
///
/// `current` is every entry of the playlist with its key, in order; `moves` are
/// `(index into current, new key)` as `domain::positions` plans them, which leave all keys
/// distinct once applied. Entries whose key does not change are not written. When no new
/// key is one an entry holds now, one step writes them: no row ever meets another's key.
/// Otherwise (a renumbering) a first step parks the moved rows on distinct keys below every
/// key old and new, and a second gives them their new keys.
pub(super) fn key_writes(
    current: &[(Uuid, i64)],
    moves: impl IntoIterator<Item = (usize, i64)>,
) -> Result<Vec<Vec<(Uuid, i64)>>, StoreError> {
    let mut changed = Vec::new();
    for (index, key) in moves {
        let (entry_id, old) = current.get(index).ok_or_else(|| {
            StoreError::Corrupt(format!("a move names entry {index} of {}", current.len()))
        })?;
        if *old != key {
            changed.push((*entry_id, key));
        }
    }
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let held: HashSet<i64> = current.iter().map(|(_, key)| *key).collect();
    if !changed.iter().any(|(_, key)| held.contains(key)) {
        return Ok(vec![changed]);
    }
    let floor = current.iter().chain(&changed).map(|(_, key)| *key).min().unwrap_or(0).min(0);
    let parked = changed
        .iter()
        .zip(1_i64..)
        .map(|((entry_id, _), n)| {
            floor
                .checked_sub(n)
                .map(|key| (*entry_id, key))
                .ok_or_else(|| StoreError::Corrupt("sort keys ran out below".to_owned()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![parked, changed])
}

/// How many entries each playlist lost, from the `playlist_id` of every deleted entry.
pub(super) fn tally(playlist_ids: Vec<Uuid>) -> Vec<(Uuid, usize)> {
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for id in playlist_ids {
        *counts.entry(id).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    // One order for every writer, so two of them never wait on each other's rows.
    counts.sort_unstable();
    counts
}

/// Implements the store for `$adapter`, with the migrations at `$migrations` and
/// `$share_lock` appended to the query that checks added tracks are in the projection
/// (`FOR KEY SHARE` on PostgreSQL, so a concurrent `track.deleted` cannot take a summary
/// out from under an add: the add waits for it and then finds the track unknown; nothing
/// on SQLite, which runs one writer at a time).
macro_rules! sql_store {
    ($adapter:ty, $migrations:literal, $share_lock:literal) => {
        use async_trait::async_trait;
        use bus::Envelope;
        use chrono::{DateTime, Utc};
        use uuid::Uuid;

        use super::{
            ChangeError, PlaylistStore, StoreError,
            sql::{
                CHUNK, EntryRow, LikeRow, ListedRow, PLAYLIST_COLUMNS, PLAYLIST_RETURNING,
                PlaylistRow,
                SUMMARY_COLUMNS, SummaryRow, bigint, count, distinct, int, key_writes, tally,
            },
        };
        use kernel::db::placeholders;
        use crate::domain::{
            Entry, Like, NewPlaylist, Playlist, PlaylistEdit, TrackChange, TrackSummary,
            positions,
        };

        type Db = <$adapter as super::sql::Engine>::Database;
        type Conn = <Db as sqlx::Database>::Connection;

        #[async_trait]
        impl PlaylistStore for $adapter {
            async fn migrate(&self) -> Result<(), StoreError> {
                sqlx::migrate!($migrations).run(&self.pool).await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn create_playlist(
                &self,
                new: &NewPlaylist,
                event: &Envelope,
            ) -> Result<Playlist, StoreError> {
                let mut tx = self.pool.begin().await?;
                let row = sqlx::query_as::<_, PlaylistRow>(&format!(
                    "INSERT INTO playlists (id, owner_id, name, description, public,
                         version, tracks_total, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $6)
                     RETURNING {PLAYLIST_RETURNING}"
                ))
                .bind(new.id)
                .bind(new.owner_id)
                .bind(&new.name)
                .bind(&new.description)
                .bind(new.public)
                .bind(new.created_at)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::conflict_or)?;
                bus::outbox::sql::insert(&mut *tx, event).await?;
                tx.commit().await?;
                row.try_into()
            }

            #[tracing::instrument(skip_all)]
            async fn playlist(&self, id: Uuid) -> Result<Option<Playlist>, StoreError> {
                sqlx::query_as::<_, PlaylistRow>(&format!(
                    "SELECT {PLAYLIST_COLUMNS} FROM playlists p WHERE p.id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .map(Playlist::try_from)
                .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn playlists_of(
                &self,
                user_id: Uuid,
                limit: u32,
                offset: u32,
            ) -> Result<(Vec<(Playlist, bool)>, u64), StoreError> {
                // A playlist the user both owns and follows is listed once, as their own; one
                // its owner made private is listed to its owner alone (the follow is kept,
                // should it be made public again).
                let rows = sqlx::query_as::<_, ListedRow>(&format!(
                    "SELECT {PLAYLIST_COLUMNS}, FALSE AS followed, p.created_at AS listed_at
                     FROM playlists p WHERE p.owner_id = $1
                     UNION ALL
                     SELECT {PLAYLIST_COLUMNS}, TRUE AS followed, f.followed_at AS listed_at
                     FROM follows f JOIN playlists p ON p.id = f.playlist_id
                     WHERE f.user_id = $1 AND p.owner_id <> $1 AND p.public
                     ORDER BY listed_at DESC, id DESC
                     LIMIT $2 OFFSET $3"
                ))
                .bind(user_id)
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?;
                let total: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM playlists WHERE owner_id = $1)
                          + (SELECT COUNT(*) FROM follows f JOIN playlists p ON p.id = f.playlist_id
                             WHERE f.user_id = $1 AND p.owner_id <> $1 AND p.public)",
                )
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
                let listed = rows.into_iter().map(TryInto::try_into).collect::<Result<_, _>>()?;
                Ok((listed, count(total)))
            }

            #[tracing::instrument(skip_all)]
            async fn update_playlist(
                &self,
                id: Uuid,
                edit: &PlaylistEdit,
                at: DateTime<Utc>,
                event: &Envelope,
            ) -> Result<Option<Playlist>, StoreError> {
                let mut tx = self.pool.begin().await?;
                let updated = sqlx::query_as::<_, PlaylistRow>(&format!(
                    "UPDATE playlists SET name = COALESCE($2, name),
                         description = COALESCE($3, description), public = COALESCE($4, public),
                         updated_at = $5
                     WHERE id = $1
                     RETURNING {PLAYLIST_RETURNING}"
                ))
                .bind(id)
                .bind(&edit.name)
                .bind(&edit.description)
                .bind(edit.public)
                .bind(at)
                .fetch_optional(&mut *tx)
                .await?
                .map(Playlist::try_from)
                .transpose()?;
                if updated.is_some() {
                    bus::outbox::sql::insert(&mut *tx, event).await?;
                }
                tx.commit().await?;
                Ok(updated)
            }

            #[tracing::instrument(skip_all)]
            async fn delete_playlist(&self, id: Uuid) -> Result<bool, StoreError> {
                // Entries and follows go with it (ON DELETE CASCADE).
                let deleted = sqlx::query("DELETE FROM playlists WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(deleted.rows_affected() == 1)
            }

            #[tracing::instrument(skip_all)]
            async fn follow(
                &self,
                user_id: Uuid,
                playlist_id: Uuid,
                at: DateTime<Utc>,
                event: &Envelope,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                // Following a playlist that is not there changes nothing.
                let added = sqlx::query(
                    "INSERT INTO follows (user_id, playlist_id, followed_at)
                     SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM playlists WHERE id = $2)
                     ON CONFLICT (user_id, playlist_id) DO NOTHING",
                )
                .bind(user_id)
                .bind(playlist_id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                let added = added.rows_affected() == 1;
                if added {
                    bus::outbox::sql::insert(&mut *tx, event).await?;
                }
                tx.commit().await?;
                Ok(added)
            }

            #[tracing::instrument(skip_all)]
            async fn unfollow(
                &self,
                user_id: Uuid,
                playlist_id: Uuid,
                event: &Envelope,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let removed =
                    sqlx::query("DELETE FROM follows WHERE user_id = $1 AND playlist_id = $2")
                        .bind(user_id)
                        .bind(playlist_id)
                        .execute(&mut *tx)
                        .await?;
                let removed = removed.rows_affected() == 1;
                if removed {
                    bus::outbox::sql::insert(&mut *tx, event).await?;
                }
                tx.commit().await?;
                Ok(removed)
            }

            #[tracing::instrument(skip_all)]
            async fn follows(&self, user_id: Uuid, playlist_id: Uuid) -> Result<bool, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT EXISTS (
                         SELECT 1 FROM follows WHERE user_id = $1 AND playlist_id = $2
                     )",
                )
                .bind(user_id)
                .bind(playlist_id)
                .fetch_one(&self.pool)
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn entries(
                &self,
                playlist_id: Uuid,
                limit: u32,
                offset: u32,
            ) -> Result<(Vec<Entry>, u64), StoreError> {
                let rows = sqlx::query_as::<_, EntryRow>(&format!(
                    "SELECT {SUMMARY_COLUMNS}, e.added_at
                     FROM playlist_entries e JOIN track_summaries s ON s.track_id = e.track_id
                     WHERE e.playlist_id = $1
                     ORDER BY e.sort_key
                     LIMIT $2 OFFSET $3"
                ))
                .bind(playlist_id)
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?;
                let total: Option<i32> =
                    sqlx::query_scalar("SELECT tracks_total FROM playlists WHERE id = $1")
                        .bind(playlist_id)
                        .fetch_optional(&self.pool)
                        .await?;
                let entries = rows
                    .into_iter()
                    .zip(u64::from(offset)..)
                    .map(|(row, position)| row.into_entry(position))
                    .collect::<Result<_, _>>()?;
                Ok((entries, count(total.unwrap_or_default().into())))
            }

            #[tracing::instrument(skip_all)]
            async fn change_tracks(
                &self,
                playlist_id: Uuid,
                expected_version: Option<i64>,
                change: &TrackChange,
                max_tracks: usize,
                at: DateTime<Utc>,
                event: &Envelope,
            ) -> Result<i64, ChangeError> {
                let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
                // First, so that this transaction holds the playlist (and on SQLite the
                // database) before it reads anything. Dropping `tx` on any error below
                // rolls the bump back with the rest.
                let bumped: Option<(i64, i32)> = sqlx::query_as(
                    "UPDATE playlists SET version = version + 1, updated_at = $2
                     WHERE id = $1 AND ($3 IS NULL OR version = $3)
                     RETURNING version, tracks_total",
                )
                .bind(playlist_id)
                .bind(at)
                .bind(expected_version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                let Some((version, total)) = bumped else {
                    let exists: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM playlists WHERE id = $1)",
                    )
                    .bind(playlist_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
                    return Err(if exists { ChangeError::Stale } else { ChangeError::NotFound });
                };
                if let TrackChange::Add { track_ids, .. } = change {
                    let total = usize::try_from(total).unwrap_or_default();
                    if total.saturating_add(track_ids.len()) > max_tracks {
                        return Err(ChangeError::Full(max_tracks));
                    }
                }
                let total = usize::try_from(total).unwrap_or_default();
                if touch_only_what_moves(&mut tx, playlist_id, change, total, at).await? {
                    bus::outbox::sql::insert(&mut *tx, event).await.map_err(StoreError::from)?;
                tx.commit().await.map_err(StoreError::from)?;
                    return Ok(version);
                }

                let current: Vec<(Uuid, i64)> = sqlx::query_as(
                    "SELECT entry_id, sort_key FROM playlist_entries
                     WHERE playlist_id = $1 ORDER BY sort_key",
                )
                .bind(playlist_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::from)?;
                let keys: Vec<i64> = current.iter().map(|(_, key)| *key).collect();
                let len = current.len();
                let new_len = match change {
                    TrackChange::Add { track_ids, position } => {
                        let placement = positions::insert(&keys, *position, track_ids.len())?;
                        let missing = missing_summaries(&mut tx, track_ids).await?;
                        if !missing.is_empty() {
                            return Err(ChangeError::UnknownTracks(missing));
                        }
                        if let Some(renumbered) = placement.renumbered {
                            let moves = renumbered.into_iter().enumerate();
                            write_keys(&mut tx, playlist_id, &current, moves).await?;
                        }
                        insert_entries(&mut tx, playlist_id, track_ids, &placement.keys, at).await?;
                        len + track_ids.len()
                    }
                    TrackChange::Remove { positions } => {
                        let removed = positions::removal(len, positions)?;
                        let entry_ids: Vec<Uuid> = removed
                            .iter()
                            .filter_map(|index| current.get(*index))
                            .map(|(id, _)| *id)
                            .collect();
                        delete_entries(&mut tx, playlist_id, &entry_ids).await?;
                        len - entry_ids.len()
                    }
                    TrackChange::Reorder { range_start, range_length, insert_before } => {
                        let planned =
                            positions::reorder(&keys, *range_start, *range_length, *insert_before)?;
                        write_keys(&mut tx, playlist_id, &current, planned.moves).await?;
                        len
                    }
                };
                if new_len != len {
                    sqlx::query("UPDATE playlists SET tracks_total = $2 WHERE id = $1")
                        .bind(playlist_id)
                        .bind(int(new_len))
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::from)?;
                }
                bus::outbox::sql::insert(&mut *tx, event).await.map_err(StoreError::from)?;
                tx.commit().await.map_err(StoreError::from)?;
                Ok(version)
            }

            #[tracing::instrument(skip_all)]
            async fn upsert_summaries(&self, summaries: &[TrackSummary]) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                upsert(&mut tx, summaries).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn apply_published(
                &self,
                consumer: &str,
                event_id: Uuid,
                summary: &TrackSummary,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(());
                }
                upsert(&mut tx, std::slice::from_ref(summary)).await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn forget_user(
                &self,
                consumer: &str,
                event_id: Uuid,
                user_id: Uuid,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(());
                }
                // Entries and follows of the user's playlists go with them (ON DELETE CASCADE).
                for statement in [
                    "DELETE FROM playlists WHERE owner_id = $1",
                    "DELETE FROM follows WHERE user_id = $1",
                    "DELETE FROM likes WHERE user_id = $1",
                ] {
                    sqlx::query(statement).bind(user_id).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn apply_deleted(
                &self,
                consumer: &str,
                event_id: Uuid,
                track_id: Uuid,
                at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(());
                }
                // The playlists first, in one order, as a change to their tracks takes
                // them: a change that holds one finishes before its entries are deleted.
                let mut holding: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT DISTINCT playlist_id FROM playlist_entries WHERE track_id = $1",
                )
                .bind(track_id)
                .fetch_all(&mut *tx)
                .await?;
                holding.sort_unstable();
                for playlist_id in &holding {
                    sqlx::query(
                        "UPDATE playlists SET version = version + 1, updated_at = $2 WHERE id = $1",
                    )
                    .bind(*playlist_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                let deleted: Vec<Uuid> = sqlx::query_scalar(
                    "DELETE FROM playlist_entries WHERE track_id = $1 RETURNING playlist_id",
                )
                .bind(track_id)
                .fetch_all(&mut *tx)
                .await?;
                for (playlist_id, removed) in tally(deleted) {
                    // A playlist the track was added to since the first look is bumped now.
                    let bumped = if holding.binary_search(&playlist_id).is_ok() { 0 } else { 1 };
                    sqlx::query(
                        "UPDATE playlists SET tracks_total = tracks_total - $2,
                             version = version + $3, updated_at = $4
                         WHERE id = $1",
                    )
                    .bind(playlist_id)
                    .bind(int(removed))
                    .bind(bumped)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("DELETE FROM track_summaries WHERE track_id = $1")
                    .bind(track_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM likes WHERE track_id = $1")
                    .bind(track_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn summaries(&self, ids: &[Uuid]) -> Result<Vec<TrackSummary>, StoreError> {
                let mut summaries = Vec::new();
                for chunk in distinct(ids).chunks(CHUNK) {
                    let sql = format!(
                        "SELECT {SUMMARY_COLUMNS} FROM track_summaries s WHERE s.track_id IN ({})",
                        placeholders(1, chunk.len())
                    );
                    let mut query = sqlx::query_as::<_, SummaryRow>(&sql);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    for row in query.fetch_all(&self.pool).await? {
                        summaries.push(row.try_into()?);
                    }
                }
                Ok(summaries)
            }

            #[tracing::instrument(skip_all)]
            async fn like(
                &self,
                user_id: Uuid,
                track_id: Uuid,
                at: DateTime<Utc>,
                event: &Envelope,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let inserted = sqlx::query(
                    "INSERT INTO likes (user_id, track_id, liked_at) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, track_id) DO NOTHING",
                )
                .bind(user_id)
                .bind(track_id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    return Ok(false);
                }
                bus::outbox::sql::insert(&mut *tx, event).await?;
                tx.commit().await?;
                Ok(true)
            }

            #[tracing::instrument(skip_all)]
            async fn unlike(
                &self,
                user_id: Uuid,
                track_id: Uuid,
                event: &Envelope,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let deleted = sqlx::query("DELETE FROM likes WHERE user_id = $1 AND track_id = $2")
                    .bind(user_id)
                    .bind(track_id)
                    .execute(&mut *tx)
                    .await?;
                if deleted.rows_affected() == 0 {
                    return Ok(false);
                }
                bus::outbox::sql::insert(&mut *tx, event).await?;
                tx.commit().await?;
                Ok(true)
            }

            #[tracing::instrument(skip_all)]
            async fn likes(
                &self,
                user_id: Uuid,
                limit: u32,
                offset: u32,
            ) -> Result<(Vec<Like>, u64), StoreError> {
                // Counted as listed: a like whose track has no summary is in neither.
                let rows = sqlx::query_as::<_, LikeRow>(&format!(
                    "SELECT {SUMMARY_COLUMNS}, l.liked_at
                     FROM likes l JOIN track_summaries s ON s.track_id = l.track_id
                     WHERE l.user_id = $1
                     ORDER BY l.liked_at DESC, l.track_id
                     LIMIT $2 OFFSET $3"
                ))
                .bind(user_id)
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?;
                let total: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM likes l JOIN track_summaries s ON s.track_id = l.track_id
                     WHERE l.user_id = $1",
                )
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
                let likes = rows.into_iter().map(Like::try_from).collect::<Result<_, _>>()?;
                Ok((likes, count(total)))
            }

            #[tracing::instrument(skip_all)]
            async fn liked_among(
                &self,
                user_id: Uuid,
                track_ids: &[Uuid],
            ) -> Result<Vec<Uuid>, StoreError> {
                let mut liked = Vec::new();
                for chunk in distinct(track_ids).chunks(CHUNK) {
                    let sql = format!(
                        "SELECT track_id FROM likes WHERE user_id = $1 AND track_id IN ({})",
                        placeholders(2, chunk.len())
                    );
                    let mut query = sqlx::query_scalar::<_, Uuid>(&sql).bind(user_id);
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    liked.extend(query.fetch_all(&self.pool).await?);
                }
                Ok(liked)
            }
        }

        bus::sql_outbox_store!($adapter);

        /// The ids among `track_ids` that the projection does not hold, each once, in
        /// their first order. On PostgreSQL the summaries found stay locked against
        /// deletion until the transaction ends.
        /// The common changes, reading only the rows they touch and their two neighbours
        /// (by offset) instead of the whole list: an add or a move whose keys fit in the
        /// gap where they go. False, having written nothing, when the gap has run out and
        /// the whole list must be read (and renumbered) instead.
        async fn touch_only_what_moves(
            tx: &mut Conn,
            playlist_id: Uuid,
            change: &TrackChange,
            len: usize,
            at: DateTime<Utc>,
        ) -> Result<bool, ChangeError> {
            use crate::domain::PositionError;
            match change {
                TrackChange::Add { track_ids, position } => {
                    let at_index = position.unwrap_or(len);
                    if at_index > len {
                        return Err(PositionError::PastEnd { position: at_index, len }.into());
                    }
                    let (before, after) = neighbours(tx, playlist_id, at_index, len).await?;
                    let Some(keys) = positions::keys_between(before, after, track_ids.len())
                    else {
                        return Ok(false);
                    };
                    let missing = missing_summaries(tx, track_ids).await?;
                    if !missing.is_empty() {
                        return Err(ChangeError::UnknownTracks(missing));
                    }
                    insert_entries(tx, playlist_id, track_ids, &keys, at).await?;
                    set_total(tx, playlist_id, len + track_ids.len()).await?;
                    Ok(true)
                }
                TrackChange::Reorder { range_start, range_length, insert_before } => {
                    let (start, length, before_index) =
                        (*range_start, *range_length, *insert_before);
                    let end = start.saturating_add(length);
                    if length == 0 || end > len {
                        return Err(PositionError::RangeOutside { start, end, len }.into());
                    }
                    if before_index > len {
                        return Err(PositionError::PastEnd { position: before_index, len }.into());
                    }
                    if (start..=end).contains(&before_index) {
                        return Ok(true);
                    }
                    let (before, after) = neighbours(tx, playlist_id, before_index, len).await?;
                    let Some(keys) = positions::keys_between(before, after, length) else {
                        return Ok(false);
                    };
                    let moved = window(tx, playlist_id, start, length).await?;
                    write_keys(tx, playlist_id, &moved, keys.into_iter().enumerate()).await?;
                    Ok(true)
                }
                TrackChange::Remove { .. } => Ok(false),
            }
        }

        /// The keys either side of `index` (the gap before the entry now at `index`).
        async fn neighbours(
            tx: &mut Conn,
            playlist_id: Uuid,
            index: usize,
            len: usize,
        ) -> Result<(Option<i64>, Option<i64>), StoreError> {
            let first = index.saturating_sub(1);
            let rows = window(tx, playlist_id, first, if index == 0 { 1 } else { 2 }).await?;
            let keys: Vec<i64> = rows.into_iter().map(|(_, key)| key).collect();
            Ok(match (index, index < len) {
                (0, _) => (None, keys.first().copied()),
                (_, true) => (keys.first().copied(), keys.get(1).copied()),
                (_, false) => (keys.first().copied(), None),
            })
        }

        /// `length` entries from `offset`, in order.
        async fn window(
            tx: &mut Conn,
            playlist_id: Uuid,
            offset: usize,
            length: usize,
        ) -> Result<Vec<(Uuid, i64)>, StoreError> {
            Ok(sqlx::query_as(
                "SELECT entry_id, sort_key FROM playlist_entries
                 WHERE playlist_id = $1 ORDER BY sort_key LIMIT $2 OFFSET $3",
            )
            .bind(playlist_id)
            .bind(bigint(length as u64))
            .bind(bigint(offset as u64))
            .fetch_all(&mut *tx)
            .await?)
        }

        async fn set_total(tx: &mut Conn, playlist_id: Uuid, total: usize) -> Result<(), StoreError> {
            sqlx::query("UPDATE playlists SET tracks_total = $2 WHERE id = $1")
                .bind(playlist_id)
                .bind(int(total))
                .execute(&mut *tx)
                .await?;
            Ok(())
        }

        async fn missing_summaries(
            conn: &mut Conn,
            track_ids: &[Uuid],
        ) -> Result<Vec<Uuid>, StoreError> {
            let wanted = distinct(track_ids);
            let mut found = std::collections::HashSet::new();
            for chunk in wanted.chunks(CHUNK) {
                let sql = format!(
                    "SELECT track_id FROM track_summaries WHERE track_id IN ({}) {}",
                    placeholders(1, chunk.len()),
                    $share_lock
                );
                let mut query = sqlx::query_scalar::<_, Uuid>(&sql);
                for id in chunk {
                    query = query.bind(*id);
                }
                found.extend(query.fetch_all(&mut *conn).await?);
            }
            Ok(wanted.into_iter().filter(|id| !found.contains(id)).collect())
        }

        /// Inserts entries for `track_ids` with `keys`, added at `at`.
        async fn insert_entries(
            conn: &mut Conn,
            playlist_id: Uuid,
            track_ids: &[Uuid],
            keys: &[i64],
            at: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            let rows: Vec<(Uuid, i64)> =
                track_ids.iter().copied().zip(keys.iter().copied()).collect();
            for chunk in rows.chunks(CHUNK) {
                let values: Vec<String> = (0..chunk.len())
                    .map(|n| format!("(${}, $1, ${}, ${}, $2)", 3 * n + 3, 3 * n + 4, 3 * n + 5))
                    .collect();
                let sql = format!(
                    "INSERT INTO playlist_entries
                         (entry_id, playlist_id, track_id, sort_key, added_at)
                     VALUES {}",
                    values.join(", ")
                );
                let mut query = sqlx::query(&sql).bind(playlist_id).bind(at);
                for (track_id, key) in chunk {
                    query = query.bind(Uuid::now_v7()).bind(*track_id).bind(*key);
                }
                query.execute(&mut *conn).await?;
            }
            Ok(())
        }

        async fn delete_entries(
            conn: &mut Conn,
            playlist_id: Uuid,
            entry_ids: &[Uuid],
        ) -> Result<(), StoreError> {
            for chunk in entry_ids.chunks(CHUNK) {
                let sql = format!(
                    "DELETE FROM playlist_entries WHERE playlist_id = $1 AND entry_id IN ({})",
                    placeholders(2, chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(playlist_id);
                for id in chunk {
                    query = query.bind(*id);
                }
                query.execute(&mut *conn).await?;
            }
            Ok(())
        }

        /// Gives entries the new keys `moves` plans, writing only those that change, in an
        /// order that keeps every key distinct after each row (see `key_writes`).
        async fn write_keys(
            conn: &mut Conn,
            playlist_id: Uuid,
            current: &[(Uuid, i64)],
            moves: impl IntoIterator<Item = (usize, i64)>,
        ) -> Result<(), StoreError> {
            for step in key_writes(current, moves)? {
                for chunk in step.chunks(CHUNK) {
                    let cases: Vec<String> = (0..chunk.len())
                        .map(|n| format!("WHEN ${} THEN ${}", 2 * n + 2, 2 * n + 3))
                        .collect();
                    let ids: Vec<String> =
                        (0..chunk.len()).map(|n| format!("${}", 2 * n + 2)).collect();
                    let sql = format!(
                        "UPDATE playlist_entries SET sort_key = CASE entry_id {} END
                         WHERE playlist_id = $1 AND entry_id IN ({})",
                        cases.join(" "),
                        ids.join(", ")
                    );
                    let mut query = sqlx::query(&sql).bind(playlist_id);
                    for (entry_id, key) in chunk {
                        query = query.bind(*entry_id).bind(*key);
                    }
                    query.execute(&mut *conn).await?;
                }
            }
            Ok(())
        }

        /// Inserts or replaces summaries; the last of two with one id wins.
        async fn upsert(conn: &mut Conn, summaries: &[TrackSummary]) -> Result<(), StoreError> {
            // One statement must not touch a row twice (PostgreSQL refuses it).
            let mut latest: std::collections::HashMap<Uuid, &TrackSummary> =
                std::collections::HashMap::new();
            for summary in summaries {
                latest.insert(summary.id, summary);
            }
            let unique: Vec<&TrackSummary> = latest.into_values().collect();
            for chunk in unique.chunks(CHUNK) {
                let values: Vec<String> =
                    (0..chunk.len()).map(|n| format!("({})", placeholders(7 * n + 1, 7))).collect();
                let sql = format!(
                    "INSERT INTO track_summaries (track_id, title, artist_id, artist_name,
                         album_id, album_title, duration_ms)
                     VALUES {}
                     ON CONFLICT (track_id) DO UPDATE SET title = excluded.title,
                         artist_id = excluded.artist_id, artist_name = excluded.artist_name,
                         album_id = excluded.album_id, album_title = excluded.album_title,
                         duration_ms = excluded.duration_ms",
                    values.join(", ")
                );
                let mut query = sqlx::query(&sql);
                for summary in chunk {
                    query = query
                        .bind(summary.id)
                        .bind(&summary.title)
                        .bind(summary.artist_id)
                        .bind(&summary.artist_name)
                        .bind(summary.album_id)
                        .bind(&summary.album_title)
                        .bind(bigint(summary.duration_ms));
                }
                query.execute(&mut *conn).await?;
            }
            Ok(())
        }
    };
}

pub(super) use sql_store;

/// Names the sqlx database an adapter runs on, for helpers generic over connections.
pub(super) trait Engine {
    type Database: sqlx::Database;
}

impl Engine for super::SqlitePlaylistStore {
    type Database = sqlx::Sqlite;
}

impl Engine for super::PostgresPlaylistStore {
    type Database = sqlx::Postgres;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::now_v7()).collect()
    }

    #[test]
    fn moves_into_a_gap_are_written_in_one_step() {
        let entries: Vec<(Uuid, i64)> = ids(4).into_iter().zip([10, 20, 30, 40]).collect();
        let steps = key_writes(&entries, [(3, 15), (0, 10)]).unwrap();
        assert_eq!(steps, [vec![(entries[3].0, 15)]], "unchanged keys are not written");
    }

    #[test]
    fn a_renumbering_onto_held_keys_parks_first() {
        let entries: Vec<(Uuid, i64)> = ids(3).into_iter().zip([-5, 10, 20]).collect();
        let steps = key_writes(&entries, [(0, 10), (1, 20), (2, 30)]).unwrap();
        let [parked, placed] = steps.as_slice() else { panic!("two steps: {steps:?}") };
        assert_eq!(placed, &[(entries[0].0, 10), (entries[1].0, 20), (entries[2].0, 30)]);
        let ids: Vec<Uuid> = parked.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, entries.iter().map(|(id, _)| *id).collect::<Vec<_>>());
        assert!(parked.iter().all(|(_, key)| *key < -5), "below every key: {parked:?}");
        let distinct: HashSet<i64> = parked.iter().map(|(_, key)| *key).collect();
        assert_eq!(distinct.len(), 3);
    }

    #[test]
    fn a_move_past_the_entries_is_refused() {
        let entries: Vec<(Uuid, i64)> = ids(1).into_iter().zip([10]).collect();
        assert!(matches!(key_writes(&entries, [(1, 5)]), Err(StoreError::Corrupt(_))));
    }
}

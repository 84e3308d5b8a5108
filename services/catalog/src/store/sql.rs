//! The SQL both adapters run. `sql_store!` implements [`CatalogStore`](super::CatalogStore)
//! for an adapter type holding a `pool` field of its engine's pool type.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::{
    Album, AlbumSummary, Artist, ArtistSummary, AudioFormat, Track, TrackStatus, search::Field,
};

/// A track with its artist's name and its album's title; filter with `t.`-qualified columns.
pub(super) const TRACK_SELECT: &str = "SELECT t.id, t.title, t.artist_id, ar.name AS artist_name,
        t.album_id, al.title AS album_title, t.track_number, t.disc_number, t.year, t.genre,
        t.duration_ms, t.content_hash, t.format, t.size_bytes, t.status, t.error,
        t.loudness_lufs, t.renditions, t.uploaded_by, t.created_at
    FROM tracks t
    JOIN artists ar ON ar.id = t.artist_id
    JOIN albums al ON al.id = t.album_id";

/// Tracks `$1` (a user id) may see: every ready track, and their own uploads whatever
/// their state. A track still processing, or one that failed, is its uploader's business.
pub(super) const VISIBLE_TO_VIEWER: &str = "(t.status = 'ready' OR t.uploaded_by = $1)";

/// Albums (`al`) with at least one ready track: the others exist only for their uploaders.
pub(super) const ALBUM_IS_PUBLISHED: &str =
    "EXISTS (SELECT 1 FROM tracks p WHERE p.album_id = al.id AND p.status = 'ready')";

/// Artists (`ar`) with at least one ready track.
pub(super) const ARTIST_IS_PUBLISHED: &str =
    "EXISTS (SELECT 1 FROM tracks p WHERE p.artist_id = ar.id AND p.status = 'ready')";

/// An album with its artist; filter with `al.`-qualified columns.
pub(super) const ALBUM_SELECT: &str = "SELECT al.id, al.title, al.year, al.artist_id,
        ar.name AS artist_name
    FROM albums al
    JOIN artists ar ON ar.id = al.artist_id";

#[derive(sqlx::FromRow)]
pub(super) struct TrackRow {
    id: Uuid,
    title: String,
    artist_id: Uuid,
    artist_name: String,
    album_id: Uuid,
    album_title: String,
    track_number: Option<i32>,
    disc_number: Option<i32>,
    year: Option<i32>,
    genre: Option<String>,
    duration_ms: i64,
    content_hash: String,
    format: String,
    size_bytes: i64,
    status: String,
    error: Option<String>,
    loudness_lufs: Option<f64>,
    renditions: sqlx::types::Json<Vec<crate::domain::Rendition>>,
    uploaded_by: Uuid,
    created_at: DateTime<Utc>,
}

impl TryFrom<TrackRow> for Track {
    type Error = StoreError;
    fn try_from(row: TrackRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str, value: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("track {}: {what} {value}", row.id))
        };
        let unsigned = |what: &str, value: Option<i32>| {
            value.map(|v| u32::try_from(v).map_err(|_| corrupt(what, &v))).transpose()
        };
        Ok(Self {
            track_number: unsigned("track number", row.track_number)?,
            disc_number: unsigned("disc number", row.disc_number)?,
            duration_ms: u64::try_from(row.duration_ms)
                .map_err(|_| corrupt("duration", &row.duration_ms))?,
            size_bytes: u64::try_from(row.size_bytes)
                .map_err(|_| corrupt("size", &row.size_bytes))?,
            format: AudioFormat::parse(&row.format)
                .ok_or_else(|| corrupt("format", &row.format))?,
            status: TrackStatus::parse(&row.status)
                .ok_or_else(|| corrupt("status", &row.status))?,
            id: row.id,
            title: row.title,
            artist: Artist { id: row.artist_id, name: row.artist_name },
            album: (row.album_id, row.album_title),
            year: row.year,
            genre: row.genre,
            content_hash: row.content_hash,
            error: row.error,
            loudness_lufs: row.loudness_lufs,
            renditions: row.renditions.0,
            uploaded_by: row.uploaded_by,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct AlbumRow {
    id: Uuid,
    title: String,
    year: Option<i32>,
    artist_id: Uuid,
    artist_name: String,
}

impl From<AlbumRow> for Album {
    fn from(row: AlbumRow) -> Self {
        Self {
            id: row.id,
            title: row.title,
            artist: Artist { id: row.artist_id, name: row.artist_name },
            year: row.year,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct AlbumSummaryRow {
    #[sqlx(flatten)]
    album: AlbumRow,
    tracks: i64,
}

impl From<AlbumSummaryRow> for AlbumSummary {
    fn from(row: AlbumSummaryRow) -> Self {
        Self { album: row.album.into(), tracks: count(row.tracks) }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ArtistRow {
    id: Uuid,
    name: String,
}

impl From<ArtistRow> for Artist {
    fn from(row: ArtistRow) -> Self {
        Self { id: row.id, name: row.name }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ArtistSummaryRow {
    #[sqlx(flatten)]
    artist: ArtistRow,
    albums: i64,
}

impl From<ArtistSummaryRow> for ArtistSummary {
    fn from(row: ArtistSummaryRow) -> Self {
        Self { artist: row.artist.into(), albums: count(row.albums) }
    }
}

/// A `COUNT(*)`, never negative.
pub(super) fn count(raw: i64) -> u64 {
    u64::try_from(raw).unwrap_or_default()
}

/// An unsigned number as the `INTEGER` column it is stored in.
pub(super) fn int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// An unsigned number as the `BIGINT` column it is stored in.
pub(super) fn bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A length or position as the `BIGINT` a statement compares it with.
pub(super) fn length(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

macro_rules! sql_store {
    ($adapter:ty, $migrations:literal) => {
        use async_trait::async_trait;
        use bus::Envelope;
        use bus::events::{TrackTranscoded, TranscodeOutcome};
        use chrono::{DateTime, Utc};
        use uuid::Uuid;

        use super::{
            CatalogStore, StoreError, match_key,
            sql::{
                ALBUM_IS_PUBLISHED, ALBUM_SELECT, ARTIST_IS_PUBLISHED, VISIBLE_TO_VIEWER, AlbumRow, AlbumSummaryRow, ArtistRow, ArtistSummaryRow,
                TRACK_SELECT, TrackRow, bigint, count, int, length,
            },
        };
        use kernel::db::Placeholders;
        use crate::domain::{
            Album, AlbumSummary, Artist, ArtistSummary, NewTrack, Track, TrackEdit, TrackSort,
            TrackStatus,
            search::{Field, Posting, trigrams},
        };

        type Db = <$adapter as super::sql::Engine>::Database;
        type Conn = <Db as sqlx::Database>::Connection;

        #[async_trait]
        impl CatalogStore for $adapter {
            async fn migrate(&self) -> Result<(), StoreError> {
                sqlx::migrate!($migrations).run(&self.pool).await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn track_by_hash(&self, content_hash: &str) -> Result<Option<Track>, StoreError> {
                sqlx::query_as::<_, TrackRow>(&format!("{TRACK_SELECT} WHERE t.content_hash = $1"))
                    .bind(content_hash)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(TryInto::try_into)
                    .transpose()
            }

            #[tracing::instrument(skip_all)]
            async fn create_track(
                &self,
                new: &NewTrack,
                event: &Envelope,
            ) -> Result<Track, StoreError> {
                let mut tx = self.pool.begin_with(<$adapter as super::sql::Engine>::BEGIN_WRITE).await?;
                let artist_id = artist_named(&mut tx, &new.artist_name).await?;
                let album_id = album_titled(&mut tx, artist_id, &new.album_title, new.year).await?;
                sqlx::query(
                    "INSERT INTO tracks (id, title, artist_id, album_id, track_number, disc_number,
                         year, genre, duration_ms, content_hash, format, size_bytes, status,
                         uploaded_by, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
                )
                .bind(new.id)
                .bind(new.title.trim())
                .bind(artist_id)
                .bind(album_id)
                .bind(new.track_number.map(int))
                .bind(new.disc_number.map(int))
                .bind(new.year)
                .bind(&new.genre)
                .bind(bigint(new.duration_ms))
                .bind(&new.content_hash)
                .bind(new.format.as_str())
                .bind(bigint(new.size_bytes))
                .bind(TrackStatus::Processing.as_str())
                .bind(new.uploaded_by)
                .bind(new.created_at)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::conflict_or)?;
                insert_event(&mut *tx, event).await?;
                let track = fetch_track(&mut *tx, new.id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("track {} vanished", new.id)))?;
                tx.commit().await?;
                Ok(track)
            }

            #[tracing::instrument(skip_all)]
            async fn track(&self, id: Uuid) -> Result<Option<Track>, StoreError> {
                fetch_track(&self.pool, id).await
            }

            #[tracing::instrument(skip_all)]
            async fn tracks(
                &self,
                sort: TrackSort,
                viewer: Uuid,
                limit: u32,
                offset: u32,
            ) -> Result<(Vec<Track>, u64), StoreError> {
                let order = match sort {
                    TrackSort::Recent => "t.created_at DESC, t.id DESC",
                    TrackSort::Title => "lower(t.title), t.id",
                };
                let tracks = sqlx::query_as::<_, TrackRow>(&format!(
                    "{TRACK_SELECT} WHERE {VISIBLE_TO_VIEWER} ORDER BY {order} LIMIT $2 OFFSET $3"
                ))
                .bind(viewer)
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(Track::try_from)
                .collect::<Result<Vec<_>, _>>()?;
                let total: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM tracks t WHERE {VISIBLE_TO_VIEWER}"
                ))
                .bind(viewer)
                .fetch_one(&self.pool)
                .await?;
                Ok((tracks, count(total)))
            }

            #[tracing::instrument(skip_all)]
            async fn update_track(
                &self,
                id: Uuid,
                edit: &TrackEdit,
                now: DateTime<Utc>,
                publish: &(dyn for<'t> Fn(&'t Track) -> Envelope + Send + Sync),
            ) -> Result<Option<Track>, StoreError> {
                let mut tx = self.pool.begin_with(<$adapter as super::sql::Engine>::BEGIN_WRITE).await?;
                let Some(current) = fetch_track(&mut *tx, id).await? else { return Ok(None) };
                let (artist_id, album_id) =
                    if edit.artist_name.is_some() || edit.album_title.is_some() {
                        let artist_id = match &edit.artist_name {
                            Some(name) => artist_named(&mut tx, name).await?,
                            None => current.artist.id,
                        };
                        let title = edit.album_title.as_deref().unwrap_or(&current.album.1);
                        let album_id = album_titled(&mut tx, artist_id, title, edit.year).await?;
                        (artist_id, album_id)
                    } else {
                        (current.artist.id, current.album.0)
                    };
                sqlx::query(
                    "UPDATE tracks SET title = COALESCE($2, title), genre = COALESCE($3, genre),
                         year = COALESCE($4, year), track_number = COALESCE($5, track_number),
                         artist_id = $6, album_id = $7, updated_at = $8
                     WHERE id = $1",
                )
                .bind(id)
                .bind(edit.title.as_deref().map(str::trim))
                .bind(&edit.genre)
                .bind(edit.year)
                .bind(edit.track_number.map(int))
                .bind(artist_id)
                .bind(album_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if album_id != current.album.0 || artist_id != current.artist.id {
                    prune(&mut tx, current.album.0, current.artist.id).await?;
                }
                let track = fetch_track(&mut *tx, id).await?;
                if let Some(track) = track.as_ref().filter(|t| t.status == TrackStatus::Ready) {
                    insert_event(&mut *tx, &publish(track)).await?;
                }
                tx.commit().await?;
                Ok(track)
            }

            #[tracing::instrument(skip_all)]
            async fn apply_transcode(
                &self,
                consumer: &str,
                event_id: Uuid,
                transcoded: &TrackTranscoded,
                publish: &(dyn for<'t> Fn(&'t Track) -> Envelope + Send + Sync),
            ) -> Result<Option<Track>, StoreError> {
                let mut tx = self.pool.begin_with(<$adapter as super::sql::Engine>::BEGIN_WRITE).await?;
                if !bus::inbox::first_delivery(&mut *tx, consumer, event_id).await? {
                    return Ok(None);
                }
                let id = transcoded.track_id;
                let at = transcoded.finished_at;
                let changed = match &transcoded.outcome {
                    TranscodeOutcome::Ready { renditions, loudness_lufs, duration_ms } => {
                        sqlx::query(
                            "UPDATE tracks SET status = $2, error = NULL, renditions = $3,
                                 loudness_lufs = $4, duration_ms = $5, updated_at = $6
                             WHERE id = $1",
                        )
                        .bind(id)
                        .bind(TrackStatus::Ready.as_str())
                        .bind(sqlx::types::Json(renditions))
                        .bind(*loudness_lufs)
                        .bind(bigint(*duration_ms))
                        .bind(at)
                        .execute(&mut *tx)
                        .await?
                    }
                    TranscodeOutcome::Failed { error } => {
                        sqlx::query(
                            "UPDATE tracks SET status = $2, error = $3, updated_at = $4
                             WHERE id = $1",
                        )
                        .bind(id)
                        .bind(TrackStatus::Failed.as_str())
                        .bind(error)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?
                    }
                };
                // A track deleted while it was transcoding has nothing left to update.
                let track = match changed.rows_affected() {
                    0 => None,
                    _ => fetch_track(&mut *tx, id).await?,
                };
                if let Some(track) = track.as_ref().filter(|t| t.status == TrackStatus::Ready) {
                    insert_event(&mut *tx, &publish(track)).await?;
                }
                tx.commit().await?;
                Ok(track)
            }

            #[tracing::instrument(skip_all)]
            async fn delete_track(
                &self,
                id: Uuid,
                event: &Envelope,
            ) -> Result<Option<Track>, StoreError> {
                let mut tx = self.pool.begin_with(<$adapter as super::sql::Engine>::BEGIN_WRITE).await?;
                let Some(track) = fetch_track(&mut *tx, id).await? else { return Ok(None) };
                sqlx::query("DELETE FROM tracks WHERE id = $1").bind(id).execute(&mut *tx).await?;
                insert_event(&mut *tx, event).await?;
                prune(&mut tx, track.album.0, track.artist.id).await?;
                tx.commit().await?;
                Ok(Some(track))
            }

            #[tracing::instrument(skip_all)]
            async fn albums(
                &self,
                limit: u32,
                offset: u32,
            ) -> Result<(Vec<AlbumSummary>, u64), StoreError> {
                let albums = sqlx::query_as::<_, AlbumSummaryRow>(
                    &format!("SELECT al.id, al.title, al.year, al.artist_id, ar.name AS artist_name,
                         (SELECT COUNT(*) FROM tracks t WHERE t.album_id = al.id AND t.status = 'ready') AS tracks
                     FROM albums al JOIN artists ar ON ar.id = al.artist_id
                     WHERE {ALBUM_IS_PUBLISHED}
                     ORDER BY al.title_key, al.id LIMIT $1 OFFSET $2"),
                )
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?;
                let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM albums al WHERE {ALBUM_IS_PUBLISHED}"))
                    .fetch_one(&self.pool)
                    .await?;
                Ok((albums.into_iter().map(AlbumSummary::from).collect(), count(total)))
            }

            #[tracing::instrument(skip_all)]
            async fn album(&self, id: Uuid) -> Result<Option<(Album, Vec<Track>)>, StoreError> {
                let album = sqlx::query_as::<_, AlbumRow>(&format!("{ALBUM_SELECT} WHERE al.id = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(album) = album else { return Ok(None) };
                // Tracks without a disc or track number come after those with one.
                let tracks = sqlx::query_as::<_, TrackRow>(&format!(
                    "{TRACK_SELECT} WHERE t.album_id = $1
                     ORDER BY t.disc_number IS NULL, t.disc_number,
                              t.track_number IS NULL, t.track_number, lower(t.title), t.id"
                ))
                .bind(id)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(Track::try_from)
                .collect::<Result<Vec<_>, _>>()?;
                Ok(Some((album.into(), tracks)))
            }

            #[tracing::instrument(skip_all)]
            async fn artists(
                &self,
                limit: u32,
                offset: u32,
            ) -> Result<(Vec<ArtistSummary>, u64), StoreError> {
                let artists = sqlx::query_as::<_, ArtistSummaryRow>(
                    &format!("SELECT ar.id, ar.name,
                         (SELECT COUNT(*) FROM albums al WHERE al.artist_id = ar.id AND {ALBUM_IS_PUBLISHED}) AS albums
                     FROM artists ar WHERE {ARTIST_IS_PUBLISHED}
                     ORDER BY ar.name_key, ar.id LIMIT $1 OFFSET $2"),
                )
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool)
                .await?;
                let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM artists ar WHERE {ARTIST_IS_PUBLISHED}"))
                    .fetch_one(&self.pool)
                    .await?;
                Ok((artists.into_iter().map(ArtistSummary::from).collect(), count(total)))
            }

            #[tracing::instrument(skip_all)]
            async fn artist(&self, id: Uuid) -> Result<Option<(Artist, Vec<Album>)>, StoreError> {
                let artist = sqlx::query_as::<_, ArtistRow>("SELECT id, name FROM artists WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(artist) = artist else { return Ok(None) };
                // Albums without a year come after those with one.
                let albums = sqlx::query_as::<_, AlbumRow>(&format!(
                    "{ALBUM_SELECT} WHERE al.artist_id = $1 AND {ALBUM_IS_PUBLISHED}
                     ORDER BY al.year IS NULL, al.year, al.title_key, al.id"
                ))
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                Ok(Some((artist.into(), albums.into_iter().map(Album::from).collect())))
            }

            #[tracing::instrument(skip_all)]
            async fn index_track(&self, track_id: Uuid, words: &[(String, Field)]) -> Result<(), StoreError> {
                let mut tx = self.pool.begin_with(<$adapter as super::sql::Engine>::BEGIN_WRITE).await?;
                sqlx::query("DELETE FROM search_words WHERE track_id = $1")
                    .bind(track_id)
                    .execute(&mut *tx)
                    .await?;
                for (word, field) in words {
                    sqlx::query(
                        "INSERT INTO search_words (word, track_id, field) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(word)
                    .bind(track_id)
                    .bind(*field as i16)
                    .execute(&mut *tx)
                    .await?;
                    for gram in trigrams(word) {
                        sqlx::query("INSERT INTO search_grams (gram, word) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                            .bind(gram)
                            .bind(word)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            #[tracing::instrument(skip_all)]
            async fn words_with_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<String>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT DISTINCT word FROM search_words WHERE word >= $1 AND word < $2
                     ORDER BY word LIMIT $3",
                )
                .bind(prefix)
                .bind(format!("{prefix}\u{10FFFF}"))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn words_sharing_trigrams(
                &self,
                grams: &[String],
                min_shared: usize,
                lengths: std::ops::RangeInclusive<usize>,
                limit: u32,
            ) -> Result<Vec<String>, StoreError> {
                if grams.is_empty() {
                    return Ok(Vec::new());
                }
                let mut params = Placeholders::default();
                let sql = format!(
                    "SELECT word FROM search_grams WHERE gram IN ({}) AND length(word) BETWEEN {} AND {}
                     GROUP BY word HAVING COUNT(*) >= {} ORDER BY COUNT(*) DESC, word LIMIT {}",
                    params.list(grams.len()),
                    params.one(),
                    params.one(),
                    params.one(),
                    params.one(),
                );
                let mut query = sqlx::query_scalar(&sql);
                for gram in grams {
                    query = query.bind(gram);
                }
                Ok(query
                    .bind(length(*lengths.start()))
                    .bind(length(*lengths.end()))
                    .bind(length(min_shared))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn tracks_with_words(
                &self,
                words: &[String],
                field: Field,
                limit: u32,
                offset: u32,
            ) -> Result<Vec<Uuid>, StoreError> {
                if words.is_empty() {
                    return Ok(Vec::new());
                }
                let mut params = Placeholders::default();
                // Ordered as the primary key (word, track_id, field) is, so the database reads
                // the index in order, passing over the words' rows in other fields, and stops
                // once the page is full.
                let sql = format!(
                    "SELECT track_id FROM search_words WHERE word IN ({}) AND field = {}
                     ORDER BY word, track_id LIMIT {} OFFSET {}",
                    params.list(words.len()),
                    params.one(),
                    params.one(),
                    params.one(),
                );
                let mut query = sqlx::query_scalar(&sql);
                for word in words {
                    query = query.bind(word);
                }
                Ok(query
                    .bind(field as i16)
                    .bind(i64::from(limit))
                    .bind(i64::from(offset))
                    .fetch_all(&self.pool)
                    .await?)
            }

            #[tracing::instrument(skip_all)]
            async fn postings(
                &self,
                words: &[String],
                per_word: u32,
            ) -> Result<Vec<Posting>, StoreError> {
                if words.is_empty() {
                    return Ok(Vec::new());
                }
                let mut params = Placeholders::default();
                let values: Vec<String> =
                    words.iter().map(|_| format!("({})", params.one())).collect();
                // One row a word, its occurrences packed into one string: a common word occurs
                // thousands of times, and a row each would cost more than reading them.
                let sql = format!(
                    "WITH asked (word) AS (VALUES {}) SELECT asked.word,
                        (SELECT {} FROM (SELECT track_id, field FROM search_words
                                         WHERE search_words.word = asked.word
                                         ORDER BY track_id LIMIT {}) AS first)
                     FROM asked",
                    values.join(", "),
                    <$adapter as super::sql::Engine>::PACKED_OCCURRENCES,
                    params.one(),
                );
                let mut query = sqlx::query_as::<_, (String, Option<String>)>(&sql);
                for word in words {
                    query = query.bind(word);
                }
                let rows = query.bind(i64::from(per_word)).fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|(word, packed)| {
                        let occurrences =
                            super::sql::unpack_occurrences(packed.as_deref().unwrap_or_default())?;
                        Ok(Posting { word, occurrences })
                    })
                    .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn tracks_by_id(&self, ids: &[Uuid]) -> Result<Vec<Track>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!("{TRACK_SELECT} WHERE t.id IN ({})", Placeholders::default().list(ids.len()));
                let mut query = sqlx::query_as::<_, TrackRow>(&sql);
                for id in ids {
                    query = query.bind(*id);
                }
                query.fetch_all(&self.pool).await?.into_iter().map(TryInto::try_into).collect()
            }

            #[tracing::instrument(skip_all)]
            async fn tracks_uploaded_by(&self, user_id: Uuid) -> Result<Vec<Track>, StoreError> {
                sqlx::query_as::<_, TrackRow>(&format!("{TRACK_SELECT} WHERE t.uploaded_by = $1"))
                    .bind(user_id)
                    .fetch_all(&self.pool)
                    .await?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect()
            }

            #[tracing::instrument(skip_all)]
            async fn disown_tracks(&self, user_id: Uuid) -> Result<u64, StoreError> {
                let done = sqlx::query("UPDATE tracks SET uploaded_by = $1 WHERE uploaded_by = $2")
                    .bind(Uuid::nil())
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            #[tracing::instrument(skip_all)]
            async fn track_groups(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, Uuid, Uuid)>, StoreError> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let sql = format!(
                    "SELECT id, album_id, artist_id FROM tracks WHERE id IN ({})",
                    Placeholders::default().list(ids.len())
                );
                let mut query = sqlx::query_as::<_, (Uuid, Uuid, Uuid)>(&sql);
                for id in ids {
                    query = query.bind(*id);
                }
                Ok(query.fetch_all(&self.pool).await?)
            }
        }

        bus::sql_outbox_store!($adapter);

        async fn fetch_track<'c, E>(executor: E, id: Uuid) -> Result<Option<Track>, StoreError>
        where
            E: sqlx::Executor<'c, Database = Db>,
        {
            sqlx::query_as::<_, TrackRow>(&format!("{TRACK_SELECT} WHERE t.id = $1"))
                .bind(id)
                .fetch_optional(executor)
                .await?
                .map(TryInto::try_into)
                .transpose()
        }

        /// The id of the artist with this name (case-insensitively), created if there is
        /// none. Safe against a concurrent creation: the loser's insert does nothing.
        async fn artist_named(conn: &mut Conn, name: &str) -> Result<Uuid, StoreError> {
            let key = match_key(name);
            sqlx::query(
                "INSERT INTO artists (id, name, name_key) VALUES ($1, $2, $3)
                 ON CONFLICT (name_key) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(name.trim())
            .bind(&key)
            .execute(&mut *conn)
            .await?;
            Ok(sqlx::query_scalar("SELECT id FROM artists WHERE name_key = $1")
                .bind(&key)
                .fetch_one(&mut *conn)
                .await?)
        }

        /// The id of the artist's album with this title (case-insensitively), created
        /// (with `year`) if there is none.
        async fn album_titled(
            conn: &mut Conn,
            artist_id: Uuid,
            title: &str,
            year: Option<i32>,
        ) -> Result<Uuid, StoreError> {
            let key = match_key(title);
            sqlx::query(
                "INSERT INTO albums (id, artist_id, title, title_key, year) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (artist_id, title_key) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(artist_id)
            .bind(title.trim())
            .bind(&key)
            .bind(year)
            .execute(&mut *conn)
            .await?;
            Ok(sqlx::query_scalar("SELECT id FROM albums WHERE artist_id = $1 AND title_key = $2")
                .bind(artist_id)
                .bind(&key)
                .fetch_one(&mut *conn)
                .await?)
        }

        /// Deletes the album if no track is left on it, then the track's artist and the
        /// album's artist if they are left with neither tracks nor albums.
        async fn prune(conn: &mut Conn, album_id: Uuid, artist_id: Uuid) -> Result<(), StoreError> {
            let album_artist: Option<Uuid> =
                sqlx::query_scalar("SELECT artist_id FROM albums WHERE id = $1")
                    .bind(album_id)
                    .fetch_optional(&mut *conn)
                    .await?;
            sqlx::query(
                "DELETE FROM albums WHERE id = $1
                 AND NOT EXISTS (SELECT 1 FROM tracks WHERE album_id = $1)",
            )
            .bind(album_id)
            .execute(&mut *conn)
            .await?;
            for artist in std::iter::once(artist_id).chain(album_artist.filter(|a| *a != artist_id)) {
                sqlx::query(
                    "DELETE FROM artists WHERE id = $1
                     AND NOT EXISTS (SELECT 1 FROM tracks WHERE artist_id = $1)
                     AND NOT EXISTS (SELECT 1 FROM albums WHERE artist_id = $1)",
                )
                .bind(artist)
                .execute(&mut *conn)
                .await?;
            }
            Ok(())
        }

        async fn insert_event<'c, E>(executor: E, event: &Envelope) -> Result<(), StoreError>
        where
            E: sqlx::Executor<'c, Database = Db>,
        {
            Ok(bus::outbox::sql::insert(executor, event).await?)
        }
    };
}

pub(super) use sql_store;

/// Names the sqlx database an adapter runs on, for helpers generic over executors, and
/// the little SQL the two dialects write differently.
pub(super) trait Engine {
    type Database: sqlx::Database;

    /// Begins a transaction that writes. On SQLite it takes the write lock at once:
    /// a transaction that read first and then finds another writer committed since
    /// cannot wait for the lock and fails ("database is locked"), where one that asks
    /// first waits out `busy_timeout` behind the other writer.
    const BEGIN_WRITE: &'static str;

    /// An aggregate of `search_words` rows into one string of 33-character records: the
    /// track id as 32 hex digits, then the field's code (see [`unpack_occurrences`]).
    const PACKED_OCCURRENCES: &'static str;
}

impl Engine for super::SqliteCatalogStore {
    type Database = sqlx::Sqlite;

    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";

    const PACKED_OCCURRENCES: &'static str = "group_concat(hex(track_id) || field, '')";
}

impl Engine for super::PostgresCatalogStore {
    type Database = sqlx::Postgres;

    const BEGIN_WRITE: &'static str = "BEGIN";

    // The uuid's bytes in hex: a third faster than formatting it as text, then
    // stripping the hyphens.
    const PACKED_OCCURRENCES: &'static str =
        "string_agg(encode(uuid_send(track_id), 'hex') || field, '')";
}

/// Reads the records [`Engine::PACKED_OCCURRENCES`] writes.
pub(super) fn unpack_occurrences(packed: &str) -> Result<Vec<(Uuid, Field)>, StoreError> {
    const RECORD: usize = 33;
    let corrupt = || StoreError::Corrupt(format!("packed search occurrences: {packed:.66}"));
    if !packed.len().is_multiple_of(RECORD) {
        return Err(corrupt());
    }
    packed
        .as_bytes()
        .chunks_exact(RECORD)
        .map(|record| {
            let track = Uuid::try_parse_ascii(&record[..32]).map_err(|_| corrupt())?;
            let field = char::from(record[32])
                .to_digit(10)
                .and_then(|code| Field::from_code(code as i16))
                .ok_or_else(corrupt)?;
            Ok((track, field))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_occurrences_are_read_in_either_case() {
        let track = Uuid::parse_str("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        let upper = "0193A1B2C3D47E5F8A9B0C1D2E3F4A5B0";
        let lower = "0193a1b2c3d47e5f8a9b0c1d2e3f4a5b2";
        let read = unpack_occurrences(&format!("{upper}{lower}")).unwrap();
        assert_eq!(read, [(track, Field::Title), (track, Field::Album)]);
        assert!(unpack_occurrences("").unwrap().is_empty());
        assert!(unpack_occurrences(&upper[..32]).is_err(), "a cut record");
        assert!(unpack_occurrences(&upper.replace('0', "x")).is_err());
        assert!(unpack_occurrences(&format!("{}7", &upper[..32])).is_err(), "no such field");
    }
}

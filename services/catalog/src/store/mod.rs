//! The catalog store port and its SQLite and PostgreSQL adapters.
//!
//! Both dialects accept the same statements here (numbered `$n` parameters, `RETURNING`,
//! `ON CONFLICT`), so the adapters share one body of SQL (`sql.rs`) and differ in their
//! pools, column types and migrations.

mod postgres;
mod sql;
mod sqlite;

use std::ops::RangeInclusive;

use async_trait::async_trait;
use bus::{Envelope, events::TrackTranscoded, outbox::OutboxStore};
use chrono::{DateTime, Utc};
use kernel::db::SqlPool;
use uuid::Uuid;

use crate::domain::{
    Album, AlbumSummary, Artist, ArtistSummary, NewTrack, Track, TrackEdit, TrackSort,
    search::{Field, Posting},
};

pub use postgres::PostgresCatalogStore;
pub use sqlite::SqliteCatalogStore;

pub use kernel::db::StoreError;

/// Also the outbox the relay drains.
#[async_trait]
pub trait CatalogStore: OutboxStore {
    async fn migrate(&self) -> Result<(), StoreError>;

    /// The track whose content has this hash, if any.
    async fn track_by_hash(&self, content_hash: &str) -> Result<Option<Track>, StoreError>;

    /// Stores a track (status `processing`), finding or creating its artist (by name,
    /// case-insensitively) and album (by title and artist, case-insensitively), and
    /// records `event` (`track.uploaded`) in the same transaction.
    /// [`StoreError::Conflict`] when a track with the same content hash exists.
    async fn create_track(&self, new: &NewTrack, event: &Envelope) -> Result<Track, StoreError>;

    /// Applies a transcode result once per event id (as `consumer`): the track becomes
    /// ready, with its renditions, loudness and decoded duration, or failed with the
    /// reason. A ready track's `publish(track)` event is recorded in the same transaction.
    /// `None` when the event was applied before or the track is gone.
    async fn apply_transcode(
        &self,
        consumer: &str,
        event_id: Uuid,
        transcoded: &TrackTranscoded,
        publish: &(dyn for<'t> Fn(&'t Track) -> Envelope + Send + Sync),
    ) -> Result<Option<Track>, StoreError>;

    async fn track(&self, id: Uuid) -> Result<Option<Track>, StoreError>;

    /// A page of the tracks `viewer` may see (every ready track and their own uploads)
    /// and the total count.
    async fn tracks(
        &self,
        sort: TrackSort,
        viewer: Uuid,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Track>, u64), StoreError>;

    /// Applies an edit (a new artist or album name moves the track to that artist or
    /// album, created if needed); `None` when there is no such track. A ready track's new
    /// metadata is announced again: `publish(track)` is recorded in the same transaction,
    /// so that read sides never keep the old title.
    async fn update_track(
        &self,
        id: Uuid,
        edit: &TrackEdit,
        now: DateTime<Utc>,
        publish: &(dyn for<'t> Fn(&'t Track) -> Envelope + Send + Sync),
    ) -> Result<Option<Track>, StoreError>;

    /// Deletes the track and records `event` (`track.deleted`) in the same transaction;
    /// returns the deleted track. Albums and artists left without tracks go too.
    async fn delete_track(&self, id: Uuid, event: &Envelope) -> Result<Option<Track>, StoreError>;

    /// Every track `user_id` uploaded, in no particular order.
    async fn tracks_uploaded_by(&self, user_id: Uuid) -> Result<Vec<Track>, StoreError>;

    /// Makes the tracks `user_id` uploaded no one's (`uploaded_by` the nil id); returns
    /// how many.
    async fn disown_tracks(&self, user_id: Uuid) -> Result<u64, StoreError>;

    /// Albums with a ready track, by title, with their counts of ready tracks.
    async fn albums(&self, limit: u32, offset: u32)
    -> Result<(Vec<AlbumSummary>, u64), StoreError>;

    /// An album with its tracks in disc and track order.
    async fn album(&self, id: Uuid) -> Result<Option<(Album, Vec<Track>)>, StoreError>;

    /// Artists with a ready track, by name, with their counts of such albums.
    async fn artists(
        &self,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<ArtistSummary>, u64), StoreError>;

    /// An artist with their albums that hold a ready track, by year, then title.
    async fn artist(&self, id: Uuid) -> Result<Option<(Artist, Vec<Album>)>, StoreError>;

    /// Replaces a track's indexed words (and indexes the trigrams of new words).
    async fn index_track(
        &self,
        track_id: Uuid,
        words: &[(String, Field)],
    ) -> Result<(), StoreError>;

    /// Distinct indexed words that start with `prefix`, at most `limit`.
    async fn words_with_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<String>, StoreError>;

    /// Indexed words of a length within `lengths` sharing at least `min_shared` of
    /// `grams`, most shared first, at most `limit`.
    async fn words_sharing_trigrams(
        &self,
        grams: &[String],
        min_shared: usize,
        lengths: RangeInclusive<usize>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;

    /// A page of the tracks where one of `words` appears in `field`, ordered by the word,
    /// then the track id; a track with several of the words appears once for each.
    async fn tracks_with_words(
        &self,
        words: &[String],
        field: Field,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<Uuid>, StoreError>;

    /// The postings of these words, one each (empty for a word not indexed), occurrences
    /// in no particular order; of a word with more than `per_word`, only those of the
    /// first `per_word` by track id.
    async fn postings(&self, words: &[String], per_word: u32) -> Result<Vec<Posting>, StoreError>;

    /// The tracks with these ids, in no particular order.
    async fn tracks_by_id(&self, ids: &[Uuid]) -> Result<Vec<Track>, StoreError>;

    /// `(track, album, artist)` ids of the tracks with these ids, in no particular order.
    async fn track_groups(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, Uuid, Uuid)>, StoreError>;
}

/// Opens the store a pool points at and brings its schema up to date.
pub async fn open(pool: SqlPool) -> Result<std::sync::Arc<dyn CatalogStore>, StoreError> {
    let store: std::sync::Arc<dyn CatalogStore> = match pool {
        SqlPool::Sqlite(pool) => std::sync::Arc::new(SqliteCatalogStore::new(pool)),
        SqlPool::Postgres(pool) => std::sync::Arc::new(PostgresCatalogStore::new(pool)),
    };
    store.migrate().await?;
    Ok(store)
}

/// How names and titles are matched: trimmed and lower-cased.
fn match_key(name: &str) -> String {
    name.trim().to_lowercase()
}

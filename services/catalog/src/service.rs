//! The catalog's operations: uploads in, tracks, albums and artists out.

use std::{path::PathBuf, sync::Arc};

use bus::{
    Envelope,
    events::{AlbumRef, ArtistRef, TrackDeleted, TrackPublished, TrackTranscoded, TrackUploaded},
};
use bytes::Bytes;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::{Stream, StreamExt};
use kernel::caller::Caller;
use objects::{ObjectKey, Objects};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::{
    config::CatalogConfig,
    domain::{
        Album, AlbumSummary, Artist, ArtistSummary, AudioFormat, CatalogError, NewTrack, Track,
        TrackEdit, TrackSort, TrackStatus, artwork, checked_name, read_tags,
        search::{self, Field},
    },
    store::{CatalogStore, StoreError},
};

/// The consumer name under which transcode results are recorded as applied.
const TRANSCODE_CONSUMER: &str = "catalog.transcodes";

/// How many completions of a query word a search considers (the first, alphabetically).
const MAX_COMPLETIONS: u32 = 50;
/// How many words sharing trigrams with a query word are checked for a near miss.
const MAX_NEAR_MISS_CANDIDATES: u32 = 200;
/// How many matches a search ranks and counts in each section, at most: the cost of a
/// query stays bounded however common its words.
pub const MAX_SEARCH_MATCHES: usize = 500;
/// How many occurrences a query of several words reads at most, shared evenly among the
/// indexed words it matches: a bound on its cost, past which a word is ranked on its
/// tracks with the lowest ids only.
const MAX_OCCURRENCES_RANKED: usize = 200_000;

/// `track.published` for a ready track: it became ready, or its metadata changed.
fn published(track: &Track) -> Envelope {
    let at = now();
    let published = TrackPublished {
        track_id: track.id,
        title: track.title.clone(),
        artist: ArtistRef { id: track.artist.id, name: track.artist.name.clone() },
        album: AlbumRef { id: track.album.0, title: track.album.1.clone() },
        duration_ms: track.duration_ms,
        published_at: at,
        genre: track.genre.clone(),
    };
    Envelope::new(&published, at)
}

fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(now)
}

/// An upload spooled to a local file, with what was learned while it streamed in.
pub struct Spooled {
    file: tempfile::TempPath,
    pub size: u64,
    pub content_hash: String,
    pub format: Option<AudioFormat>,
}

/// Names given in the upload that override the file's own tags.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub title: Option<String>,
    pub artist: Option<String>,
    pub album: Option<String>,
}

impl Overrides {
    /// The names as an edit would take them; a blank field leaves the tag's name.
    fn checked(self) -> Result<Self, CatalogError> {
        let check = |field, value: Option<String>| {
            value.filter(|v| !v.trim().is_empty()).map(|v| checked_name(field, &v)).transpose()
        };
        Ok(Self {
            title: check("title", self.title)?,
            artist: check("artist", self.artist)?,
            album: check("album", self.album)?,
        })
    }
}

/// What a search found, best first: a page of each section and how many it holds.
#[derive(Debug, Default)]
pub struct SearchResults {
    pub tracks: Found<Track>,
    /// Album id, title and the artist of the best-ranked track on it.
    pub albums: Found<(Uuid, String, Artist)>,
    pub artists: Found<Artist>,
}

/// A page of matches and the number of matches in all (at most [`MAX_SEARCH_MATCHES`]).
#[derive(Debug)]
pub struct Found<T> {
    pub items: Vec<T>,
    pub total: u64,
}

impl<T> Default for Found<T> {
    fn default() -> Self {
        Self { items: Vec::new(), total: 0 }
    }
}

#[derive(Debug)]
pub enum Uploaded {
    Created(Track),
    /// The same content was uploaded before: this is that track.
    Duplicate(Track),
}

pub struct CatalogService {
    store: Arc<dyn CatalogStore>,
    objects: Objects,
    config: CatalogConfig,
}

/// Where a track's media lives in object storage.
pub fn media_prefix(track: Uuid) -> Result<ObjectKey, CatalogError> {
    Ok(ObjectKey::parse(&format!("tracks/{track}"))?)
}

fn album_prefix(album: Uuid) -> Result<ObjectKey, CatalogError> {
    Ok(ObjectKey::parse(&format!("albums/{album}"))?)
}

fn artwork_key(album: Uuid, size: u32) -> Result<ObjectKey, CatalogError> {
    Ok(album_prefix(album)?.join(&format!("artwork-{size}.jpg"))?)
}

impl CatalogService {
    pub fn new(store: Arc<dyn CatalogStore>, objects: Objects, config: CatalogConfig) -> Self {
        Self { store, objects, config }
    }

    pub fn store(&self) -> &Arc<dyn CatalogStore> {
        &self.store
    }

    pub fn max_upload_bytes(&self) -> u64 {
        self.config.max_upload_bytes
    }

    /// Streams an upload to a temporary file, hashing it and noting its format on the
    /// way, and refusing it once it passes the size limit. Never holds it whole in memory.
    pub async fn spool<S>(&self, stream: S) -> Result<Spooled, CatalogError>
    where
        S: Stream<Item = Result<Bytes, CatalogError>>,
    {
        let (file, path) = tempfile::NamedTempFile::new()
            .map_err(|e| CatalogError::Upload(e.to_string()))?
            .into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = Sha256::new();
        let mut head = Vec::with_capacity(AudioFormat::SNIFF_LEN);
        let mut size = 0_u64;
        futures::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            if size > self.config.max_upload_bytes {
                return Err(CatalogError::TooLarge { limit: self.config.max_upload_bytes });
            }
            if head.len() < AudioFormat::SNIFF_LEN {
                let take = (AudioFormat::SNIFF_LEN - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| CatalogError::Upload(e.to_string()))?;
        }
        file.flush().await.map_err(|e| CatalogError::Upload(e.to_string()))?;
        let content_hash = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Ok(Spooled { file: path, size, content_hash, format: AudioFormat::sniff(&head) })
    }

    /// Files a spooled upload: known content answers with its track; anything else is
    /// stored (original in object storage, track `processing`). A failure leaves neither
    /// a track nor an object behind.
    pub async fn ingest(
        &self,
        caller: &Caller,
        spooled: Spooled,
        file_name: Option<String>,
        overrides: Overrides,
    ) -> Result<Uploaded, CatalogError> {
        let overrides = overrides.checked()?;
        if spooled.size == 0 {
            return Err(CatalogError::Invalid { field: "file", reason: "is empty".into() });
        }
        let format = spooled.format.ok_or(CatalogError::UnsupportedFormat)?;
        if let Some(existing) = self.store.track_by_hash(&spooled.content_hash).await? {
            return Ok(Uploaded::Duplicate(existing));
        }
        let path: PathBuf = spooled.file.to_path_buf();
        let tags = tokio::task::spawn_blocking(move || read_tags(&path, file_name.as_deref()))
            .await
            .map_err(|e| CatalogError::Upload(e.to_string()))?;
        let pick = |given: Option<String>, tagged: String| given.unwrap_or(tagged);
        let cover = tags.cover;
        let new = NewTrack {
            id: Uuid::now_v7(),
            title: pick(overrides.title, tags.title),
            artist_name: pick(overrides.artist, tags.artist),
            album_title: pick(overrides.album, tags.album),
            track_number: tags.track_number,
            disc_number: tags.disc_number,
            year: tags.year,
            genre: tags.genre,
            duration_ms: tags.duration_ms,
            content_hash: spooled.content_hash.clone(),
            format,
            size_bytes: spooled.size,
            uploaded_by: caller.user_id,
            created_at: now(),
        };
        let original = media_prefix(new.id)?.join(&format!("original.{}", format.as_str()))?;
        self.objects.put_stream(&original, file_chunks(spooled.file.to_path_buf())).await?;
        let uploaded = TrackUploaded {
            track_id: new.id,
            source_key: original.to_string(),
            format: format.as_str().to_owned(),
            uploaded_at: new.created_at,
        };
        let event = Envelope::new(&uploaded, new.created_at);
        match self.store.create_track(&new, &event).await {
            Ok(track) => {
                tracing::info!(track_id = %track.id, format = format.as_str(), "track uploaded");
                if let Some(cover) = cover {
                    self.store_artwork(track.album.0, cover).await;
                }
                Ok(Uploaded::Created(track))
            }
            Err(error) => {
                let _ = self.objects.delete_prefix(&media_prefix(new.id)?).await;
                match error {
                    // The same content arrived twice at once; the other upload won.
                    StoreError::Conflict => {
                        match self.store.track_by_hash(&new.content_hash).await? {
                            Some(existing) => Ok(Uploaded::Duplicate(existing)),
                            None => Err(StoreError::Conflict.into()),
                        }
                    }
                    other => Err(other.into()),
                }
            }
        }
    }

    /// Files one local file as `owner`'s upload, as `tonearm import` does.
    pub async fn import_file(
        &self,
        owner: &Caller,
        path: &std::path::Path,
    ) -> Result<Uploaded, CatalogError> {
        let chunks = file_chunks(path.to_path_buf())
            .map(|chunk| chunk.map_err(|e| CatalogError::Upload(e.to_string())));
        let spooled = self.spool(chunks).await?;
        let file_name = path.file_name().map(|name| name.to_string_lossy().into_owned());
        self.ingest(owner, spooled, file_name, Overrides::default()).await
    }

    /// Keeps the first cover an album gets, scaled to every served size. Artwork is a
    /// nicety: failing to store it is logged, never an upload error.
    async fn store_artwork(&self, album: Uuid, cover: Vec<u8>) {
        let Ok(largest) = artwork_key(album, artwork::SIZES[artwork::SIZES.len() - 1]) else {
            return;
        };
        if matches!(self.objects.head(&largest).await, Ok(Some(_))) {
            return;
        }
        let scaled = tokio::task::spawn_blocking(move || artwork::scale_cover(&cover)).await;
        let Ok(Some(scaled)) = scaled else {
            tracing::debug!(%album, "embedded cover is not a readable image");
            return;
        };
        for (size, jpeg) in scaled {
            let stored = match artwork_key(album, size) {
                Ok(key) => self.objects.put(&key, Bytes::from(jpeg)).await,
                Err(_) => continue,
            };
            if let Err(error) = stored {
                tracing::warn!(%album, %error, "could not store artwork");
            }
        }
    }

    /// An album's cover at one of the served sizes, as JPEG.
    pub async fn artwork(&self, album: Uuid, size: u32) -> Result<Bytes, CatalogError> {
        if !artwork::SIZES.contains(&size) {
            return Err(CatalogError::Invalid {
                field: "size",
                reason: "must be 300 or 640".into(),
            });
        }
        self.store.album(album).await?.ok_or(CatalogError::NotFound("album"))?;
        match self.objects.get(&artwork_key(album, size)?).await {
            Ok(bytes) => Ok(bytes),
            Err(objects::ObjectsError::NotFound(_)) => Err(CatalogError::NotFound("artwork")),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn track(&self, id: Uuid) -> Result<Track, CatalogError> {
        self.store.track(id).await?.ok_or(CatalogError::NotFound("track"))
    }

    /// A track as `caller` may see it: one that is not ready is its uploader's (and the
    /// admins') alone; to anyone else it does not exist.
    pub async fn visible_track(&self, caller: &Caller, id: Uuid) -> Result<Track, CatalogError> {
        let track = self.track(id).await?;
        if track.status == TrackStatus::Ready || may_change(caller, &track) {
            Ok(track)
        } else {
            Err(CatalogError::NotFound("track"))
        }
    }

    /// A page of the tracks `caller` may see: the ready ones and their own.
    pub async fn tracks(
        &self,
        caller: &Caller,
        sort: TrackSort,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<Track>, u64), CatalogError> {
        Ok(self.store.tracks(sort, caller.user_id, limit, offset).await?)
    }

    pub async fn update(
        &self,
        caller: &Caller,
        id: Uuid,
        mut edit: TrackEdit,
    ) -> Result<Track, CatalogError> {
        let track = self.visible_track(caller, id).await?;
        ensure_may_change(caller, &track)?;
        for (field, value) in [
            ("title", &mut edit.title),
            ("artist", &mut edit.artist_name),
            ("album", &mut edit.album_title),
        ] {
            if let Some(given) = value.as_deref() {
                *value = Some(checked_name(field, given)?);
            }
        }
        if edit.track_number.is_some_and(|number| !(1..=999).contains(&number)) {
            return Err(CatalogError::Invalid {
                field: "track_number",
                reason: "must be 1 to 999".into(),
            });
        }
        if edit.year.is_some_and(|year| !(1000..=9999).contains(&year)) {
            return Err(CatalogError::Invalid {
                field: "year",
                reason: "must be a four-digit year".into(),
            });
        }
        let track = self
            .store
            .update_track(id, &edit, now(), &published)
            .await?
            .ok_or(CatalogError::NotFound("track"))?;
        if track.status == TrackStatus::Ready {
            self.reindex(&track).await?;
        }
        Ok(track)
    }

    /// Makes a track findable by the words of its title, artist and album. Only ready
    /// tracks are indexed: search finds what anyone may play.
    pub async fn reindex(&self, track: &Track) -> Result<(), CatalogError> {
        let words: Vec<(String, Field)> = [
            (&track.title, Field::Title),
            (&track.artist.name, Field::Artist),
            (&track.album.1, Field::Album),
        ]
        .into_iter()
        .flat_map(|(text, field)| search::words(text).into_iter().map(move |word| (word, field)))
        .collect();
        Ok(self.store.index_track(track.id, &words).await?)
    }

    /// Tracks whose title, artist and album answer every word of `query` (a prefix, or a
    /// word within one edit, two for long words), best first; albums whose title and
    /// artists whose name answer it. Each section asked for is the page
    /// `offset..offset + limit` of at most [`MAX_SEARCH_MATCHES`] matches, with their count.
    pub async fn search(
        &self,
        query: &str,
        sections: Sections,
        limit: u32,
        offset: u32,
    ) -> Result<SearchResults, CatalogError> {
        let query_words: Vec<String> = search::words(query).into_iter().take(8).collect();
        if query_words.is_empty() {
            return Err(CatalogError::Invalid { field: "q", reason: "must contain a word".into() });
        }
        let mut candidates = Vec::with_capacity(query_words.len());
        for word in &query_words {
            let matches = self.matching_words(word).await?;
            if matches.is_empty() {
                return Ok(SearchResults::default());
            }
            candidates.push(matches);
        }
        let ranking = match candidates.as_slice() {
            [one_word] => Ranking::OneWord(one_word),
            _ => Ranking::Postings(self.postings(&candidates).await?),
        };
        let page = |ids: &[Uuid]| -> Vec<Uuid> {
            ids.iter().skip(offset as usize).take(limit as usize).copied().collect()
        };
        // A page of tracks, in the order of `ranked`.
        let tracks_of = |ranked: Vec<Uuid>| async move {
            let mut tracks = self.store.tracks_by_id(&ranked).await?;
            tracks.sort_by_key(|track| ranked.iter().position(|id| *id == track.id));
            Ok::<_, CatalogError>(tracks)
        };
        let mut results = SearchResults::default();
        if sections.tracks {
            let ranked = self.ranked(&query_words, &ranking, &Field::ALL).await?;
            results.tracks =
                Found { items: tracks_of(page(&ranked)).await?, total: ranked.len() as u64 };
        }
        // Albums and artists are found by their own names, each once, in the rank of
        // their best track.
        if sections.albums {
            let ranked = self.ranked(&query_words, &ranking, &[Field::Album]).await?;
            let albums = self.distinct_groups(&ranked, |(_, album, _)| album).await?;
            let items = tracks_of(page(&albums)).await?;
            results.albums = Found {
                items: items.into_iter().map(|t| (t.album.0, t.album.1, t.artist)).collect(),
                total: albums.len() as u64,
            };
        }
        if sections.artists {
            let ranked = self.ranked(&query_words, &ranking, &[Field::Artist]).await?;
            let artists = self.distinct_groups(&ranked, |(_, _, artist)| artist).await?;
            let items = tracks_of(page(&artists)).await?;
            results.artists = Found {
                items: items.into_iter().map(|track| track.artist).collect(),
                total: artists.len() as u64,
            };
        }
        Ok(results)
    }

    /// The postings of every indexed word a query of several words matches, each read
    /// whole up to its share of the budget (beyond it, the tracks with the lowest ids), so
    /// that a track found is ranked on all it holds.
    async fn postings(
        &self,
        candidates: &[Vec<(String, u32)>],
    ) -> Result<Vec<search::Posting>, CatalogError> {
        let words: std::collections::BTreeSet<&String> =
            candidates.iter().flatten().map(|(word, _)| word).collect();
        let words: Vec<String> = words.into_iter().cloned().collect();
        let per_word =
            u32::try_from(MAX_OCCURRENCES_RANKED / words.len().max(1)).unwrap_or(u32::MAX);
        Ok(self.store.postings(&words, per_word).await?)
    }

    /// The tracks that answer every query word in one of `fields`, best first, at most
    /// [`MAX_SEARCH_MATCHES`].
    async fn ranked(
        &self,
        query_words: &[String],
        ranking: &Ranking<'_>,
        fields: &[Field],
    ) -> Result<Vec<Uuid>, CatalogError> {
        match ranking {
            Ranking::OneWord(matches) => {
                self.best_matches_of_one_word(matches, fields, MAX_SEARCH_MATCHES).await
            }
            // `rank` keeps the tracks that answer every query word.
            Ranking::Postings(postings) if fields.len() == Field::ALL.len() => {
                Ok(top(search::rank(query_words, postings)))
            }
            Ranking::Postings(postings) => {
                let in_fields: Vec<search::Posting> = postings
                    .iter()
                    .map(|posting| search::Posting {
                        word: posting.word.clone(),
                        occurrences: posting
                            .occurrences
                            .iter()
                            .filter(|(_, field)| fields.contains(field))
                            .copied()
                            .collect(),
                    })
                    .collect();
                Ok(top(search::rank(query_words, &in_fields)))
            }
        }
    }

    /// The first track of each album (or artist) among `ranked`, in rank order.
    async fn distinct_groups(
        &self,
        ranked: &[Uuid],
        group: impl Fn(&(Uuid, Uuid, Uuid)) -> &Uuid,
    ) -> Result<Vec<Uuid>, CatalogError> {
        let groups = self.store.track_groups(ranked).await?;
        let by_track: std::collections::HashMap<Uuid, &(Uuid, Uuid, Uuid)> =
            groups.iter().map(|row| (row.0, row)).collect();
        let mut seen = std::collections::HashSet::new();
        Ok(ranked
            .iter()
            .filter_map(|track| by_track.get(track))
            .filter(|row| seen.insert(*group(row)))
            .map(|row| row.0)
            .collect())
    }

    /// The indexed words a query word matches, with their [`search::match_strength`]:
    /// the first completions in alphabetical order and the nearest near misses.
    async fn matching_words(&self, query_word: &str) -> Result<Vec<(String, u32)>, CatalogError> {
        let mut matches = std::collections::BTreeMap::new();
        for word in self.store.words_with_prefix(query_word, MAX_COMPLETIONS).await? {
            if let Some(strength) = search::match_strength(query_word, &word) {
                matches.insert(word, strength);
            }
        }
        if query_word.chars().count() >= 3 {
            let similar = self
                .store
                .words_sharing_trigrams(
                    &search::trigrams(query_word),
                    search::min_shared_trigrams(query_word),
                    search::near_miss_lengths(query_word),
                    MAX_NEAR_MISS_CANDIDATES,
                )
                .await?;
            for word in similar {
                if let Some(strength) = search::match_strength(query_word, &word) {
                    matches.entry(word).or_insert(strength);
                }
            }
        }
        Ok(matches.into_iter().collect())
    }

    /// The best `limit` tracks for a one-word query with a match in one of `fields`,
    /// read tier by tier so that a common word costs its best matches, not every track
    /// it appears in.
    async fn best_matches_of_one_word(
        &self,
        matches: &[(String, u32)],
        fields: &[Field],
        limit: usize,
    ) -> Result<Vec<Uuid>, CatalogError> {
        let mut ranked = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // Fewer than `limit` tracks are missing and fewer than `limit` were ranked before
        // (and may come back): a page of `limit` usually ends a tier's reading.
        let page = u32::try_from(limit).unwrap_or(u32::MAX).max(1);
        for tier in search::tiers(matches).into_iter().filter(|tier| fields.contains(&tier.field)) {
            let mut offset = 0;
            while ranked.len() < limit {
                let tracks =
                    self.store.tracks_with_words(&tier.words, tier.field, page, offset).await?;
                for track in &tracks {
                    if ranked.len() < limit && seen.insert(*track) {
                        ranked.push(*track);
                    }
                }
                if tracks.len() < page as usize {
                    break;
                }
                offset = offset.saturating_add(page);
            }
            if ranked.len() == limit {
                break;
            }
        }
        Ok(ranked)
    }

    /// Marks a track ready or failed as streaming reports, once per event; a track that
    /// became ready is announced with `track.published`.
    pub async fn apply_transcode(
        &self,
        event_id: Uuid,
        transcoded: &TrackTranscoded,
    ) -> Result<(), CatalogError> {
        let applied = self
            .store
            .apply_transcode(TRANSCODE_CONSUMER, event_id, transcoded, &published)
            .await?;
        let track = match applied {
            Some(track) => {
                tracing::info!(track_id = %track.id, status = track.status.as_str(), error = track.error.as_deref(), "transcode applied");
                Some(track)
            }
            // Applied before: indexing may not have followed (the process stopped between),
            // and doing it again is harmless.
            None => self.store.track(transcoded.track_id).await?,
        };
        match track {
            Some(track) if track.status == TrackStatus::Ready => self.reindex(&track).await,
            _ => Ok(()),
        }
    }

    /// Deletes a track, its media, and publishes `track.deleted`.
    pub async fn delete(&self, caller: &Caller, id: Uuid) -> Result<(), CatalogError> {
        let track = self.visible_track(caller, id).await?;
        ensure_may_change(caller, &track)?;
        self.remove(&track).await
    }

    /// What becomes of a deleted account's uploads: those that play stay in the shared
    /// catalog, no longer anyone's (`uploaded_by` becomes the nil id, so that only admins
    /// may change them); those that never became ready were visible to their uploader
    /// alone and go, media and all. Safe to run again for the same account.
    pub async fn forget_uploader(&self, user_id: Uuid) -> Result<(), CatalogError> {
        for track in self.store.tracks_uploaded_by(user_id).await? {
            if track.status != TrackStatus::Ready {
                match self.remove(&track).await {
                    Ok(()) | Err(CatalogError::NotFound(_)) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        let disowned = self.store.disown_tracks(user_id).await?;
        tracing::info!(%user_id, disowned, "a deleted account's uploads are no longer theirs");
        Ok(())
    }

    /// Deletes a track and its media, and publishes `track.deleted`.
    async fn remove(&self, track: &Track) -> Result<(), CatalogError> {
        let id = track.id;
        let at = now();
        let event = Envelope::new(&TrackDeleted { track_id: id, deleted_at: at }, at);
        self.store.delete_track(id, &event).await?.ok_or(CatalogError::NotFound("track"))?;
        let mut media = vec![media_prefix(id)?];
        // The store drops an album left without tracks; its artwork goes with it.
        if self.store.album(track.album.0).await?.is_none() {
            media.push(album_prefix(track.album.0)?);
        }
        for prefix in media {
            if let Err(error) = self.objects.delete_prefix(&prefix).await {
                // The track is gone either way; leftover media is reclaimable garbage.
                tracing::warn!(track_id = %id, %error, "could not delete media");
            }
        }
        Ok(())
    }

    pub async fn albums(
        &self,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<AlbumSummary>, u64), CatalogError> {
        Ok(self.store.albums(limit, offset).await?)
    }

    /// An album with the tracks `caller` may see; an album with none does not exist
    /// for them.
    pub async fn album(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<(Album, Vec<Track>), CatalogError> {
        let (album, mut tracks) =
            self.store.album(id).await?.ok_or(CatalogError::NotFound("album"))?;
        tracks.retain(|track| track.status == TrackStatus::Ready || may_change(caller, track));
        if tracks.is_empty() {
            return Err(CatalogError::NotFound("album"));
        }
        Ok((album, tracks))
    }

    pub async fn artists(
        &self,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<ArtistSummary>, u64), CatalogError> {
        Ok(self.store.artists(limit, offset).await?)
    }

    /// An artist with their published albums; one with none is not listed.
    pub async fn artist(&self, id: Uuid) -> Result<(Artist, Vec<Album>), CatalogError> {
        match self.store.artist(id).await? {
            Some((artist, albums)) if !albums.is_empty() => Ok((artist, albums)),
            _ => Err(CatalogError::NotFound("artist")),
        }
    }
}

/// How a query's tracks are ranked: a one-word query reads its matches tier by tier; a
/// longer one ranks the postings of all its words, read once.
enum Ranking<'a> {
    OneWord(&'a [(String, u32)]),
    Postings(Vec<search::Posting>),
}

/// The best [`MAX_SEARCH_MATCHES`] of a ranking.
fn top(ranked: Vec<(Uuid, u32)>) -> Vec<Uuid> {
    ranked.into_iter().take(MAX_SEARCH_MATCHES).map(|(track, _)| track).collect()
}

/// The sections a search answers.
#[derive(Debug, Clone, Copy)]
pub struct Sections {
    pub tracks: bool,
    pub albums: bool,
    pub artists: bool,
}

impl Sections {
    pub const ALL: Self = Self { tracks: true, albums: true, artists: true };
}

fn may_change(caller: &Caller, track: &Track) -> bool {
    caller.user_id == track.uploaded_by || caller.is_admin()
}

fn ensure_may_change(caller: &Caller, track: &Track) -> Result<(), CatalogError> {
    if may_change(caller, track) { Ok(()) } else { Err(CatalogError::NotYours) }
}

/// A file as a stream of 1 MiB chunks.
fn file_chunks(path: PathBuf) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::try_unfold(None::<tokio::fs::File>, move |file| {
        let path = path.clone();
        async move {
            let mut file = match file {
                Some(file) => file,
                None => tokio::fs::File::open(&path).await?,
            };
            let mut buffer = vec![0; 1 << 20];
            let read = file.read(&mut buffer).await?;
            if read == 0 {
                return Ok(None);
            }
            buffer.truncate(read);
            Ok(Some((Bytes::from(buffer), Some(file))))
        }
    })
}

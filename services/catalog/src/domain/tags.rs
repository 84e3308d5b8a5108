//! What a file says about itself, read with lofty (ID3v2, Vorbis comments, FLAC, MP4 atoms).

use std::path::Path;

use lofty::{
    picture::PictureType,
    prelude::{Accessor, AudioFile, TaggedFileExt},
};

use super::{UNKNOWN_ARTIST, track::tag_name};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrackTags {
    pub title: String,
    pub artist: String,
    pub album: String,
    pub track_number: Option<u32>,
    pub disc_number: Option<u32>,
    pub year: Option<i32>,
    pub genre: Option<String>,
    pub duration_ms: u64,
    /// The embedded cover image, front cover preferred, as stored in the file.
    pub cover: Option<Vec<u8>>,
}

/// Reads the tags and duration of the file at `path`. A file without tags gets its title
/// from `file_name` (extension dropped) and the artist "Unknown Artist"; a file lofty
/// cannot parse at all gets the same, with no duration (the transcoder will tell).
pub fn read_tags(path: &Path, file_name: Option<&str>) -> TrackTags {
    let fallback_title = file_name
        .map(|name| name.rsplit(['/', '\\']).next().unwrap_or(name))
        .map(|name| name.rsplit_once('.').map_or(name, |(stem, _)| stem).trim().to_owned())
        .filter(|title| !title.is_empty())
        .map_or_else(|| "Untitled".to_owned(), tag_name);
    let mut tags = TrackTags {
        title: fallback_title,
        artist: UNKNOWN_ARTIST.to_owned(),
        album: String::new(),
        ..TrackTags::default()
    };
    // The type comes from the content: the spooled file has no meaningful name.
    let probed =
        lofty::probe::Probe::open(path).ok().and_then(|probe| probe.guess_file_type().ok());
    let Some(Ok(file)) = probed.map(lofty::probe::Probe::read) else { return finish(tags) };
    tags.duration_ms = u64::try_from(file.properties().duration().as_millis()).unwrap_or(u64::MAX);
    if let Some(tag) = file.primary_tag().or_else(|| file.first_tag()) {
        let text = |value: Option<std::borrow::Cow<'_, str>>| {
            value.map(|v| tag_name(v.trim().to_owned())).filter(|v| !v.is_empty())
        };
        if let Some(title) = text(tag.title()) {
            tags.title = title;
        }
        if let Some(artist) = text(tag.artist()) {
            tags.artist = artist;
        }
        tags.album = text(tag.album()).unwrap_or_default();
        tags.genre = text(tag.genre());
        tags.track_number = tag.track();
        tags.disc_number = tag.disk();
        tags.year = tag.year().and_then(|year| i32::try_from(year).ok());
        let pictures = tag.pictures();
        tags.cover = pictures
            .iter()
            .find(|picture| picture.pic_type() == PictureType::CoverFront)
            .or_else(|| pictures.first())
            .map(|picture| picture.data().to_vec());
    }
    finish(tags)
}

/// An album is never blank: loose tracks are filed under a title naming their artist.
fn finish(mut tags: TrackTags) -> TrackTags {
    if tags.album.is_empty() {
        tags.album = format!("{} (singles)", tags.artist);
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_tags_is_named_after_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upload");
        std::fs::write(&path, b"not really audio").unwrap();
        let tags = read_tags(&path, Some("music/Night Drive.mp3"));
        assert_eq!(tags.title, "Night Drive");
        assert_eq!(tags.artist, UNKNOWN_ARTIST);
        assert_eq!(tags.album, "Unknown Artist (singles)");
        assert_eq!(read_tags(&path, None).title, "Untitled");
    }
}

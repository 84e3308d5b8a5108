//! Shapes every API shares: paged lists, the embedded track summary, millisecond
//! timestamps, and where signed media lives.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use utoipa::{IntoParams, ToSchema};

use crate::problem::Problem;

/// Every signed media path starts so: the gateway and a lone streaming service send these
/// requests past the API's layers.
pub const MEDIA_PREFIX: &str = "/media/";

/// The route signed media is documented and counted under in metrics.
pub const MEDIA_ROUTE: &str = "/media/{track_id}/{path}";

/// `?limit=` (default 20, at most 100) and `?offset=`.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 100.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Items to skip, 0 to 2147483647.
    #[param(minimum = 0, maximum = 2147483647)]
    pub offset: Option<u32>,
}

impl PageQuery {
    pub const DEFAULT_LIMIT: u32 = 20;
    pub const MAX_LIMIT: u32 = 100;
    /// Past any list's end; the document says the same (an `int32`).
    pub const MAX_OFFSET: u32 = i32::MAX as u32;

    /// The validated `(limit, offset)`.
    pub fn resolve(self) -> Result<(u32, u32), Problem> {
        let limit = self.limit.unwrap_or(Self::DEFAULT_LIMIT);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(Problem::bad_request(format!("limit must be 1 to {}", Self::MAX_LIMIT)));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > Self::MAX_OFFSET {
            return Err(Problem::bad_request(format!("offset must be 0 to {}", Self::MAX_OFFSET)));
        }
        Ok((limit, offset))
    }
}

/// `{"items":[…],"total":N,"limit":L,"offset":O}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
}

impl<T> Page<T> {
    pub fn of(items: Vec<T>, total: u64, limit: u32, offset: u32) -> Self {
        Self { items, total, limit, offset }
    }

    /// The same page with each item turned into another shape.
    pub fn map<U>(self, shape: impl FnMut(T) -> U) -> Page<U> {
        Page::of(self.items.into_iter().map(shape).collect(), self.total, self.limit, self.offset)
    }

    /// Pages a list that is already complete in memory.
    pub fn slice(all: Vec<T>, limit: u32, offset: u32) -> Self {
        let total = all.len() as u64;
        let items = all.into_iter().skip(offset as usize).take(limit as usize).collect();
        Self { items, total, limit, offset }
    }
}

/// The summary every response embeds wherever it refers to a track (under `track`, or as
/// a list item): one shape across services, as the API conventions promise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrackSummary {
    pub id: uuid::Uuid,
    pub title: String,
    pub artist: ArtistRef,
    pub album: AlbumRef,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArtistRef {
    pub id: uuid::Uuid,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlbumRef {
    pub id: uuid::Uuid,
    pub title: String,
}

/// Serializes a time as RFC 3339 UTC with milliseconds: `2026-01-02T03:04:05.678Z`.
pub fn millis<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_default_and_bound_their_limit() {
        assert_eq!(PageQuery { limit: None, offset: None }.resolve().unwrap(), (20, 0));
        assert!(PageQuery { limit: Some(101), offset: None }.resolve().is_err());
        assert!(PageQuery { limit: Some(0), offset: None }.resolve().is_err());
        assert!(PageQuery { limit: None, offset: Some(i32::MAX as u32 + 1) }.resolve().is_err());
        let page = Page::slice((0..5).collect(), 2, 3);
        assert_eq!((page.items, page.total), (vec![3, 4], 5));
    }

    #[test]
    fn times_have_millisecond_precision() {
        #[derive(Serialize)]
        struct At(#[serde(serialize_with = "millis")] DateTime<Utc>);
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678901Z").unwrap().to_utc();
        assert_eq!(serde_json::to_string(&At(at)).unwrap(), "\"2026-01-02T03:04:05.678Z\"");
    }
}

/// An album as search lists it: with the artist of its best-ranked track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SearchAlbum {
    pub id: uuid::Uuid,
    pub title: String,
    pub artist: ArtistRef,
}

/// `GET /v1/search`'s answer with every section: tracks, albums and artists, ranked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    pub tracks: Page<TrackSummary>,
    pub albums: Page<SearchAlbum>,
    pub artists: Page<ArtistRef>,
}

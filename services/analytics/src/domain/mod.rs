//! The analytics service's plain types and rules: what a play is and when it counts as a
//! stream, the time buckets every chart uses, and how a percentile is taken. Both
//! warehouses answer by these rules, and the tests' reference computations use them too.

pub mod buckets;
pub mod plays;

use uuid::Uuid;

pub use buckets::{Bucketing, Interval, Period, Window};
pub use plays::{PlayError, PlayReport, is_stream, validate_play};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// One play as the warehouse keeps it. `play_id` is the client's id (or one the server
/// made up): the warehouse counts each id once however often it is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayFact {
    pub play_id: Uuid,
    pub user_id: Uuid,
    pub track_id: Uuid,
    /// When the play started, in milliseconds since the Unix epoch.
    pub played_at_ms: i64,
    pub played_ms: u64,
    pub stream: bool,
}

/// A user did something (played, liked, unliked, registered) at this time: the basis of
/// the active-user counts. Recording one twice changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityFact {
    pub user_id: Uuid,
    pub at_ms: i64,
}

/// One request the gateway answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFact {
    pub method: String,
    /// The route template, e.g. `/v1/tracks/{id}`.
    pub route: String,
    pub status: u16,
    pub duration_us: u64,
    pub at_ms: i64,
}

impl RequestFact {
    /// Server faults count as errors; a client's mistakes (4xx) do not.
    pub fn is_error(&self) -> bool {
        self.status >= 500
    }
}

/// A track's counts over a window, as top tracks ranks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackPlays {
    pub track_id: Uuid,
    pub plays: u64,
    pub streams: u64,
    /// Distinct users who played it.
    pub listeners: u64,
}

/// One bucket of the play series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayPoint {
    /// The bucket's start, in milliseconds since the Unix epoch.
    pub t_ms: i64,
    pub plays: u64,
    pub streams: u64,
    pub listeners: u64,
}

/// One bucket of the active-user series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivePoint {
    pub t_ms: i64,
    pub active_users: u64,
}

/// One play in a user's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    pub play_id: Uuid,
    pub track_id: Uuid,
    pub played_at_ms: i64,
    pub played_ms: u64,
}

/// Request counts and latencies of one route over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteStats {
    pub method: String,
    pub route: String,
    pub requests: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p95_us: u64,
}

/// The value at quantile `level` of ascending `sorted` values: the one at index
/// `floor(level × n)` (the last for level 1). ClickHouse's `quantileExact` takes the same
/// element, so both warehouses agree to the microsecond.
pub fn quantile(sorted: &[u64], level: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Truncation is the definition: floor of a non-negative product.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let index = ((level * sorted.len() as f64) as usize).min(sorted.len() - 1);
    sorted[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_take_the_element_at_the_floored_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&values, 0.5), 51);
        assert_eq!(quantile(&values, 0.95), 96);
        assert_eq!(quantile(&values, 1.0), 100);
        assert_eq!(quantile(&[7], 0.95), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}

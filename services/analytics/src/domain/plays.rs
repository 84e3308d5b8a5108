//! What a reported play must be to count, and when it counts as a stream.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use super::PlayFact;

/// How far past a track's duration a play may run: players report a little over when
/// they round, buffer or loop the last segment.
pub const DURATION_SLACK_MS: u64 = 10_000;

/// How late an offline play may be reported: a month, the longest chart window.
pub const MAX_AGE: TimeDelta = TimeDelta::days(30);

/// How far ahead of the server's clock a client's may run.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// Most plays one request may report.
pub const MAX_PLAYS_PER_REQUEST: usize = 500;

/// A play as a client reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayReport {
    pub id: Option<Uuid>,
    pub track_id: Uuid,
    pub played_ms: u64,
    pub started_at: Option<DateTime<Utc>>,
    pub context: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayError {
    #[error("played_ms {played_ms} is longer than the track ({duration_ms} ms)")]
    TooLong { played_ms: u64, duration_ms: u64 },
    #[error("started_at is in the future")]
    InTheFuture,
    #[error("started_at is more than 30 days ago")]
    TooOld,
    #[error("context is longer than 200 characters")]
    ContextTooLong,
}

/// A play counts as a stream once it lasted at least 30 seconds, or half the track when
/// the track is shorter than a minute.
pub fn is_stream(played_ms: u64, duration_ms: u64) -> bool {
    played_ms >= (duration_ms / 2).min(30_000)
}

/// Checks a report of a play of a track lasting `duration_ms`, received at `now`, and
/// makes it a fact for `user_id`. A report without an id gets a fresh one; one without a
/// start time started `played_ms` before `now`.
pub fn validate_play(
    report: &PlayReport,
    user_id: Uuid,
    duration_ms: u64,
    now: DateTime<Utc>,
) -> Result<PlayFact, PlayError> {
    if report.played_ms > duration_ms.saturating_add(DURATION_SLACK_MS) {
        return Err(PlayError::TooLong { played_ms: report.played_ms, duration_ms });
    }
    if report.context.as_ref().is_some_and(|context| context.chars().count() > 200) {
        return Err(PlayError::ContextTooLong);
    }
    let played = TimeDelta::milliseconds(i64::try_from(report.played_ms).unwrap_or(i64::MAX));
    let started_at = report.started_at.unwrap_or(now - played);
    if started_at > now + MAX_CLOCK_SKEW {
        return Err(PlayError::InTheFuture);
    }
    if started_at < now - MAX_AGE {
        return Err(PlayError::TooOld);
    }
    Ok(PlayFact {
        play_id: report.id.unwrap_or_else(Uuid::now_v7),
        user_id,
        track_id: report.track_id,
        played_at_ms: started_at.timestamp_millis(),
        played_ms: report.played_ms,
        stream: is_stream(report.played_ms, duration_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(played_ms: u64) -> PlayReport {
        PlayReport {
            id: None,
            track_id: Uuid::now_v7(),
            played_ms,
            started_at: None,
            context: None,
        }
    }

    #[test]
    fn a_stream_is_thirty_seconds_or_half_a_short_track() {
        assert!(is_stream(30_000, 240_000));
        assert!(!is_stream(29_999, 240_000));
        assert!(is_stream(10_000, 20_000));
        assert!(!is_stream(9_999, 20_000));
    }

    #[test]
    fn plays_longer_than_the_track_and_its_slack_are_refused() {
        let now = Utc::now();
        let user = Uuid::now_v7();
        assert!(validate_play(&report(200_000), user, 190_000, now).is_ok());
        assert_eq!(
            validate_play(&report(200_001), user, 190_000, now),
            Err(PlayError::TooLong { played_ms: 200_001, duration_ms: 190_000 })
        );
    }

    #[test]
    fn start_times_must_be_recent_and_not_ahead() {
        let now = Utc::now();
        let user = Uuid::now_v7();
        let at = |delta: TimeDelta| PlayReport { started_at: Some(now + delta), ..report(1_000) };
        assert_eq!(
            validate_play(&at(TimeDelta::hours(1)), user, 9_000, now),
            Err(PlayError::InTheFuture)
        );
        assert_eq!(
            validate_play(&at(TimeDelta::days(-31)), user, 9_000, now),
            Err(PlayError::TooOld)
        );
        let offline = validate_play(&at(TimeDelta::days(-3)), user, 9_000, now).unwrap();
        assert_eq!(offline.played_at_ms, (now - TimeDelta::days(3)).timestamp_millis());
    }

    #[test]
    fn a_play_without_a_start_began_its_length_ago() {
        let now = Utc::now();
        let fact = validate_play(&report(60_000), Uuid::now_v7(), 200_000, now).unwrap();
        assert_eq!(fact.played_at_ms, now.timestamp_millis() - 60_000);
        assert!(fact.stream);
    }
}

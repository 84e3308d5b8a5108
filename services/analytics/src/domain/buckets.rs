//! Time buckets. Every chart counts whole UTC buckets: an hour, a day, a week from Monday,
//! a calendar month. A top-tracks window of 24 hours is the current hour and the 23 before
//! it, so a chart changes once a play lands and again only as whole hours roll off.

use chrono::{DateTime, Datelike, Months, NaiveDate};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{DAY_MS, HOUR_MS};

/// The span top tracks count over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
pub enum Window {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

impl Window {
    pub fn hours(self) -> i64 {
        match self {
            Self::Hour => 1,
            Self::Day => 24,
            Self::Week => 7 * 24,
            Self::Month => 30 * 24,
        }
    }

    /// The first hour inside the window that ends with the hour holding `now_ms`.
    pub fn start_ms(self, now_ms: i64) -> i64 {
        Bucketing::Hour.start_of(now_ms) - (self.hours() - 1) * HOUR_MS
    }
}

/// The buckets of the play series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Hour,
    Day,
}

impl From<Interval> for Bucketing {
    fn from(interval: Interval) -> Self {
        match interval {
            Interval::Hour => Self::Hour,
            Interval::Day => Self::Day,
        }
    }
}

/// The buckets of the active-user series: daily, weekly and monthly active users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
}

impl From<Period> for Bucketing {
    fn from(period: Period) -> Self {
        match period {
            Period::Day => Self::Day,
            Period::Week => Self::Week,
            Period::Month => Self::Month,
        }
    }
}

/// How times fall into buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucketing {
    Hour,
    Day,
    /// Weeks start on Monday, 00:00 UTC.
    Week,
    Month,
}

impl Bucketing {
    /// The start of the bucket holding `ms`.
    pub fn start_of(self, ms: i64) -> i64 {
        match self {
            Self::Hour => ms.div_euclid(HOUR_MS) * HOUR_MS,
            Self::Day => ms.div_euclid(DAY_MS) * DAY_MS,
            Self::Week => {
                let day = ms.div_euclid(DAY_MS);
                // 1970-01-01 was a Thursday, three days after a Monday.
                (day - (day + 3).rem_euclid(7)) * DAY_MS
            }
            Self::Month => {
                let date = date_of(ms);
                let first = date.with_day(1).unwrap_or(date);
                ms_of(first)
            }
        }
    }

    /// The start of the bucket after the one starting at `start`.
    pub fn next(self, start: i64) -> i64 {
        match self {
            Self::Hour => start + HOUR_MS,
            Self::Day => start + DAY_MS,
            Self::Week => start + 7 * DAY_MS,
            Self::Month => {
                let date = date_of(start);
                ms_of(date.checked_add_months(Months::new(1)).unwrap_or(date))
            }
        }
    }

    /// The starts of every bucket that overlaps `[from_ms, to_ms]`, oldest first.
    pub fn starts(self, from_ms: i64, to_ms: i64) -> Vec<i64> {
        let mut starts = Vec::new();
        let mut start = self.start_of(from_ms);
        while start <= to_ms {
            starts.push(start);
            start = self.next(start);
        }
        starts
    }

    /// How many buckets overlap `[from_ms, to_ms]`, without listing them.
    pub fn count(self, from_ms: i64, to_ms: i64) -> i64 {
        if to_ms < from_ms {
            return 0;
        }
        let first = self.start_of(from_ms);
        let last = self.start_of(to_ms);
        match self {
            Self::Hour => (last - first) / HOUR_MS + 1,
            Self::Day => (last - first) / DAY_MS + 1,
            Self::Week => (last - first) / (7 * DAY_MS) + 1,
            Self::Month => {
                let (a, b) = (date_of(first), date_of(last));
                i64::from(b.year() - a.year()) * 12 + i64::from(b.month()) - i64::from(a.month())
                    + 1
            }
        }
    }
}

fn date_of(ms: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(ms).map(|t| t.date_naive()).unwrap_or_default()
}

fn ms_of(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis()).unwrap_or_default()
}

/// A sparse series (only buckets with data, any order) spread over every bucket of
/// `starts`, with `empty` where there was none.
pub fn fill<T: Copy>(
    starts: &[i64],
    sparse: &[T],
    start_of: impl Fn(&T) -> i64,
    empty: impl Fn(i64) -> T,
) -> Vec<T> {
    let found: std::collections::HashMap<i64, T> =
        sparse.iter().map(|point| (start_of(point), *point)).collect();
    starts.iter().map(|&t| found.get(&t).copied().unwrap_or_else(|| empty(t))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()
    }

    #[test]
    fn buckets_start_on_utc_boundaries() {
        let t = ms("2026-11-25T13:45:10.123Z");
        assert_eq!(Bucketing::Hour.start_of(t), ms("2026-11-25T13:00:00Z"));
        assert_eq!(Bucketing::Day.start_of(t), ms("2026-11-25T00:00:00Z"));
        // 2026-11-25 is a Wednesday.
        assert_eq!(Bucketing::Week.start_of(t), ms("2026-11-23T00:00:00Z"));
        assert_eq!(Bucketing::Month.start_of(t), ms("2026-11-01T00:00:00Z"));
        assert_eq!(Bucketing::Month.next(ms("2026-12-01T00:00:00Z")), ms("2027-01-01T00:00:00Z"));
        assert_eq!(
            Bucketing::Week.start_of(ms("1969-12-31T12:00:00Z")),
            ms("1969-12-29T00:00:00Z")
        );
    }

    #[test]
    fn a_window_is_whole_hours_ending_with_the_current_one() {
        let now = ms("2026-11-25T13:45:00Z");
        assert_eq!(Window::Hour.start_ms(now), ms("2026-11-25T13:00:00Z"));
        assert_eq!(Window::Day.start_ms(now), ms("2026-11-24T14:00:00Z"));
        assert_eq!(Window::Week.start_ms(now), ms("2026-11-18T14:00:00Z"));
    }

    #[test]
    fn counts_agree_with_listed_starts() {
        let (from, to) = (ms("2025-01-31T23:00:00Z"), ms("2026-11-25T13:00:00Z"));
        for bucketing in [Bucketing::Hour, Bucketing::Day, Bucketing::Week, Bucketing::Month] {
            let starts = bucketing.starts(from, to);
            assert_eq!(starts.len() as i64, bucketing.count(from, to), "{bucketing:?}");
            assert!(starts.windows(2).all(|pair| pair[0] < pair[1]));
        }
        assert_eq!(Bucketing::Month.count(from, to), 23);
        assert_eq!(Bucketing::Hour.count(to, from), 0);
    }

    #[test]
    fn filling_puts_empty_buckets_between_the_sparse_ones() {
        let starts = Bucketing::Hour.starts(0, 3 * HOUR_MS);
        let filled = fill(&starts, &[(2 * HOUR_MS, 5_u64)], |p| p.0, |t| (t, 0));
        assert_eq!(filled, vec![(0, 0), (HOUR_MS, 0), (2 * HOUR_MS, 5), (3 * HOUR_MS, 0)]);
    }
}

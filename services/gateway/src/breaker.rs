//! A circuit breaker for one upstream replica. After enough consecutive transport failures
//! (refused, reset, timed out) it opens: requests are refused at once, with a
//! `Retry-After`, instead of each waiting on a replica that is down. When the open period
//! ends, one request goes through as a probe; its success closes the breaker, and its
//! failure opens it again.
//!
//! Only transport failures count. A service that answers, even with 503 because one of its
//! own dependencies is away, is up as far as the gateway can tell.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One request is on its way to find out whether the replica is back.
    Probing,
}

/// Whether a request may go to the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Go,
    Refused { retry_after: Duration },
}

#[derive(Debug)]
pub struct Breaker {
    failures_to_open: u32,
    open_for: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(failures_to_open: u32, open_for: Duration) -> Self {
        Self {
            failures_to_open: failures_to_open.max(1),
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    pub fn admit(&self, now: Instant) -> Admission {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match *state {
            State::Closed { .. } => Admission::Go,
            State::Open { until } if now < until => Admission::Refused { retry_after: until - now },
            State::Open { .. } => {
                *state = State::Probing;
                Admission::Go
            }
            State::Probing => Admission::Refused { retry_after: self.open_for },
        }
    }

    pub fn succeeded(&self) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = State::Closed { failures: 0 };
    }

    /// Counts a transport failure; true when it opened the breaker.
    pub fn failed(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let next = match *state {
            State::Closed { failures } if failures + 1 < self.failures_to_open => {
                State::Closed { failures: failures + 1 }
            }
            State::Closed { .. } | State::Probing => State::Open { until: now + self.open_for },
            open @ State::Open { .. } => open,
        };
        let opened = matches!(next, State::Open { .. }) && !matches!(*state, State::Open { .. });
        *state = next;
        opened
    }

    pub fn is_open(&self) -> bool {
        !matches!(*self.state.lock().unwrap_or_else(PoisonError::into_inner), State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Duration = Duration::from_secs(10);

    #[test]
    fn it_opens_after_consecutive_failures_only() {
        let breaker = Breaker::new(3, OPEN);
        let now = Instant::now();
        assert!(!breaker.failed(now));
        assert!(!breaker.failed(now));
        breaker.succeeded();
        assert!(!breaker.failed(now));
        assert!(!breaker.failed(now));
        assert_eq!(breaker.admit(now), Admission::Go, "a success reset the count");
        assert!(breaker.failed(now), "the third in a row opens it");
        assert_eq!(
            breaker.admit(now + Duration::from_secs(4)),
            Admission::Refused { retry_after: Duration::from_secs(6) }
        );
    }

    #[test]
    fn after_the_open_period_one_probe_decides() {
        let breaker = Breaker::new(1, OPEN);
        let now = Instant::now();
        breaker.failed(now);
        let later = now + OPEN;
        assert_eq!(breaker.admit(later), Admission::Go, "the probe");
        assert!(matches!(breaker.admit(later), Admission::Refused { .. }), "one probe at a time");
        assert!(breaker.failed(later), "a failed probe opens it again");
        assert!(matches!(breaker.admit(later), Admission::Refused { .. }));
        assert_eq!(breaker.admit(later + OPEN), Admission::Go);
        breaker.succeeded();
        assert!(!breaker.is_open());
        assert_eq!(breaker.admit(later + OPEN), Admission::Go);
    }
}

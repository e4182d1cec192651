// SPDX-License-Identifier: MPL-2.0

//! Rate limiting for warnings that can repeat on every buffer, record or
//! retry (a full queue, bad records, a broker going away): one warning per
//! interval is enough for an application to react, more floods the bus.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The usual interval between two warnings of one kind.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// Lets an event through at most once per interval, and counts the ones
/// held back in between.
///
/// ```ignore
/// // In the element's started state:
/// bad_record_warnings: Throttle::default(),
/// // Where the event happens:
/// if let Some(held_back) = started.bad_record_warnings.allow() {
///     gst::element_imp_warning!(self, gst::StreamError::Decode,
///         ("bad record at offset {offset} ({held_back} more since the last warning)"));
/// }
/// ```
///
/// `allow` takes `&self`, so a throttle can live in an `Arc` shared with
/// librdkafka's callback threads as well as in a struct behind a mutex.
#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub const fn new(interval: Duration) -> Self {
        Throttle {
            interval,
            state: Mutex::new(ThrottleState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when the caller should emit now: the first time, and then
    /// once the interval has passed since the last time it did. `n` is how
    /// many calls were held back since then. `None` means: stay quiet.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    /// The events held back and not yet reported, reported from now on
    /// (for a last summary, e.g. at EOS).
    pub fn take_held_back(&self) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut state.suppressed)
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            state.suppressed = state.suppressed.saturating_add(1);
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.suppressed))
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(WARNING_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_interval_and_a_count_of_the_rest() {
        let throttle = Throttle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(throttle.allow_at(start), Some(0));
        assert_eq!(throttle.allow_at(start), None);
        assert_eq!(throttle.allow_at(start + Duration::from_millis(999)), None);
        assert_eq!(throttle.allow_at(start + Duration::from_secs(1)), Some(2));
        assert_eq!(throttle.allow_at(start + Duration::from_millis(1500)), None);
        assert_eq!(throttle.allow_at(start + Duration::from_secs(3)), Some(1));
        assert_eq!(throttle.allow_at(start + Duration::from_secs(3)), None);
        assert_eq!(throttle.take_held_back(), 1);
        assert_eq!(throttle.take_held_back(), 0);
    }
}

// SPDX-License-Identifier: MPL-2.0

//! Delivery accounting of `kafkasink`: records handed to librdkafka, those
//! the brokers acknowledged or that finally failed, those dropped or kept
//! waiting on a full queue, and how long acknowledgements took. Updated
//! from the streaming thread and from librdkafka's delivery callback.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Headers, Message};
use rdkafka::producer::ProducerContext;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use super::produce::InFlight;
use crate::kafka::KafkaContext;
use crate::wireformat;

/// The producer's client context: the shared one, plus delivery accounting.
pub type SinkContext = KafkaContext<Delivery>;

#[derive(Debug)]
pub struct Delivery {
    counters: Mutex<Counters>,
    /// Woken on every finished delivery: room in the queue, progress of a flush.
    progress: Notify,
    /// What delivery latencies are measured from.
    epoch: Instant,
}

/// A snapshot of the accounting, for `stats` and for deciding what to report.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub records_sent: u64,
    pub bytes_sent: u64,
    pub records_acked: u64,
    pub bytes_acked: u64,
    pub delivery_errors: u64,
    /// Value bytes of the records that failed.
    bytes_failed: u64,
    pub dropped: u64,
    /// Records that found librdkafka's queue full and waited for room.
    pub queue_full_waits: u64,
    /// Frames over the record limit sent as chunks, and their chunks (also
    /// counted as records).
    pub frames_chunked: u64,
    pub chunks_sent: u64,
    pub last_partition: i32,
    pub last_offset: i64,
    pub latency_last_us: u64,
    pub latency_max_us: u64,
    pub latency_total_us: u64,
    first_error: Option<String>,
    reported_errors: u64,
    /// When a record was last acknowledged, or else first handed over:
    /// how long the brokers have been away.
    last_ack_at: Option<Instant>,
    first_sent_at: Option<Instant>,
}

/// What librdkafka's producer queue holds at most
/// (`queue.buffering.max.kbytes` and `queue.buffering.max.messages`, as
/// configured): past either, it refuses records as QueueFull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBound {
    pub bytes: u64,
    /// 0: no bound on the number of records.
    pub records: u64,
}

/// How far a stream that is not live may run ahead of the brokers'
/// acknowledgements (docs/design.md, "Running ahead"): records beyond it wait
/// in the sink, upstream, instead of in librdkafka's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAhead {
    /// Value bytes in flight a new frame may join.
    pub bytes: u64,
    /// Records in flight below which any frame may join, however large.
    pub records: u64,
}

impl Counters {
    /// Whether a frame of `bytes` value bytes may be handed over now
    /// without running further ahead than `ahead`.
    pub fn may_run_ahead(&self, ahead: RunAhead, bytes: u64) -> bool {
        self.in_flight() < ahead.records
            || self.in_flight_bytes().saturating_add(bytes) <= ahead.bytes
    }

    /// Value bytes of the records in flight.
    pub fn in_flight_bytes(&self) -> u64 {
        self.bytes_sent
            .saturating_sub(self.bytes_acked)
            .saturating_sub(self.bytes_failed)
    }

    /// Whether `records` more records with `bytes` of values in all fit in
    /// a queue bounded by `bound` beside the records in flight, every
    /// record (in flight or new) counted with `overhead` bytes of key and
    /// headers.
    pub fn room_for(&self, bound: QueueBound, records: u64, bytes: u64, overhead: u64) -> bool {
        let in_flight = self.in_flight();
        let held = in_flight
            .saturating_add(records)
            .saturating_mul(overhead)
            .saturating_add(self.in_flight_bytes())
            .saturating_add(bytes);
        let records_fit = bound.records == 0 || in_flight.saturating_add(records) <= bound.records;
        records_fit && held <= bound.bytes
    }

    pub fn in_flight(&self) -> u64 {
        self.records_sent
            .saturating_sub(self.records_acked)
            .saturating_sub(self.delivery_errors)
    }

    pub fn latency_avg_us(&self) -> u64 {
        self.latency_total_us
            .checked_div(self.records_acked)
            .unwrap_or(0)
    }

    /// Records lost if the producer went away now: in flight, or failed
    /// without an element error saying so.
    pub fn unaccounted(&self) -> u64 {
        self.in_flight() + (self.delivery_errors - self.reported_errors)
    }
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            counters: Mutex::default(),
            progress: Notify::new(),
            epoch: Instant::now(),
        }
    }
}

impl Delivery {
    fn counters_mut(&self) -> std::sync::MutexGuard<'_, Counters> {
        // Counters stay consistent even if a holder panicked: every update
        // is a few plain additions.
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn counters(&self) -> Counters {
        self.counters_mut().clone()
    }

    /// [`Counters::may_run_ahead`], without a snapshot: asked before every
    /// frame of a stream that runs ahead.
    pub fn may_run_ahead(&self, ahead: RunAhead, bytes: u64) -> bool {
        self.counters_mut().may_run_ahead(ahead, bytes)
    }

    /// Resolves on the next finished delivery.
    pub fn progress(&self) -> Notified<'_> {
        self.progress.notified()
    }

    /// Counts a record of `bytes` about to be handed to librdkafka (before:
    /// its delivery callback may run first) and returns the delivery opaque
    /// that dates it.
    pub fn sending(&self, bytes: usize) -> usize {
        let mut counters = self.counters_mut();
        counters.records_sent += 1;
        counters.bytes_sent += bytes as u64;
        counters.first_sent_at.get_or_insert_with(Instant::now);
        self.epoch.elapsed().as_micros() as usize
    }

    /// Takes back [`Delivery::sending`] for a record librdkafka refused.
    pub fn not_sent(&self, bytes: usize) {
        let mut counters = self.counters_mut();
        counters.records_sent -= 1;
        counters.bytes_sent -= bytes as u64;
    }

    /// Counts a frame sent as `chunks` chunk records.
    pub fn chunked(&self, chunks: usize) {
        let mut counters = self.counters_mut();
        counters.frames_chunked += 1;
        counters.chunks_sent += chunks as u64;
    }

    pub fn queue_full_wait(&self) {
        self.counters_mut().queue_full_waits += 1;
    }

    /// Counts a dropped record; returns how many were dropped so far.
    pub fn dropped(&self) -> u64 {
        let mut counters = self.counters_mut();
        counters.dropped += 1;
        counters.dropped
    }

    /// How long no record has been acknowledged at `now`: since the last
    /// acknowledgement, or since the first record was handed over.
    pub fn unacknowledged_for(&self, now: Instant) -> Duration {
        let counters = self.counters_mut();
        counters
            .last_ack_at
            .or(counters.first_sent_at)
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// A delivery failure not yet raised as an element error: how many
    /// records failed so far and the first reason.
    pub fn unreported_failure(&self) -> Option<(u64, String)> {
        let mut counters = self.counters_mut();
        if counters.delivery_errors == counters.reported_errors {
            return None;
        }
        counters.reported_errors = counters.delivery_errors;
        Some((
            counters.delivery_errors,
            counters.first_error.clone().unwrap_or_default(),
        ))
    }

    fn delivered(&self, result: &DeliveryResult<'_>, sent_at_us: usize) {
        let latency_us =
            (self.epoch.elapsed().as_micros() as u64).saturating_sub(sent_at_us as u64);
        let mut counters = self.counters_mut();
        match result {
            Ok(message) => {
                counters.records_acked += 1;
                counters.bytes_acked += message.payload_len() as u64;
                counters.last_partition = message.partition();
                counters.last_offset = message.offset();
                counters.latency_last_us = latency_us;
                counters.latency_max_us = counters.latency_max_us.max(latency_us);
                counters.latency_total_us += latency_us;
                counters.last_ack_at = Some(Instant::now());
            }
            Err((error, message)) => {
                counters.delivery_errors += 1;
                counters.bytes_failed += message.payload_len() as u64;
                if counters.first_error.is_none() {
                    let mut reason = describe_delivery_error(error, message.payload_len());
                    if let Some(frame) = chunk_of(message) {
                        reason = format!("{frame}: {reason}");
                    }
                    counters.first_error = Some(reason);
                }
            }
        }
        drop(counters);
        self.progress.notify_one();
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Box<InFlight>;

    /// Dropping `in_flight` at the end releases the record's frame.
    fn delivery(&self, result: &DeliveryResult<'_>, in_flight: Box<InFlight>) {
        self.extra.delivered(result, in_flight.sent_at_us);
    }
}

/// "chunk I of N of frame SEQ" when `message` is a chunk record: a frame
/// is lost with any of its chunks.
fn chunk_of(message: &impl Message) -> Option<String> {
    let headers = message.headers()?;
    let value = |key: &str| {
        headers
            .iter()
            .find(|header| header.key == key)
            .and_then(|header| std::str::from_utf8(header.value?).ok())
    };
    let index = value(wireformat::CHUNK_INDEX_KEY)?;
    Some(format!(
        "chunk {index} of {} of frame {} (gst-seq)",
        value(wireformat::CHUNK_COUNT_KEY).unwrap_or("?"),
        value(wireformat::SEQ_KEY).unwrap_or("?")
    ))
}

/// librdkafka's reason for a failed record, with what to do about the
/// common ones.
pub fn describe_delivery_error(error: &KafkaError, size: usize) -> String {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => format!(
            "the broker refused a record of {size} bytes as too large: raise the topic's \
             max.message.bytes and the broker's message.max.bytes ({error})"
        ),
        Some(RDKafkaErrorCode::MessageTimedOut) => format!(
            "records were not acknowledged within message-timeout-ms: the broker is \
             unreachable or too slow ({error})"
        ),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_records_are_taken_back_and_the_rest_are_in_flight() {
        let delivery = Delivery::default();
        delivery.sending(100);
        delivery.sending(50);
        delivery.not_sent(50);
        delivery.queue_full_wait();
        assert_eq!(delivery.dropped(), 1);
        let counters = delivery.counters();
        assert_eq!((counters.records_sent, counters.bytes_sent), (1, 100));
        assert_eq!(counters.in_flight(), 1);
        assert_eq!(counters.unaccounted(), 1);
        assert_eq!(counters.queue_full_waits, 1);
        assert_eq!(counters.latency_avg_us(), 0);
        assert_eq!(delivery.unreported_failure(), None);
    }

    #[test]
    fn a_frame_fits_only_beside_what_is_in_flight() {
        let bound = QueueBound {
            bytes: 10_000,
            records: 10,
        };
        let delivery = Delivery::default();
        assert!(delivery.counters().room_for(bound, 10, 9_000, 100));
        assert!(!delivery.counters().room_for(bound, 11, 100, 0));
        assert!(!delivery.counters().room_for(bound, 2, 9_999, 1));
        for _ in 0..4 {
            delivery.sending(1_000);
        }
        // 4 records of 1000 bytes and 100 of overhead each in flight.
        let counters = delivery.counters();
        assert_eq!(counters.in_flight_bytes(), 4_000);
        assert!(counters.room_for(bound, 5, 5_100, 100));
        assert!(!counters.room_for(bound, 5, 5_101, 100));
        assert!(!counters.room_for(bound, 7, 0, 0));
        let unbounded = QueueBound {
            records: 0,
            ..bound
        };
        assert!(counters.room_for(unbounded, 1_000, 0, 0));
        // Acknowledged or failed records make room again.
        delivery.counters_mut().records_acked = 2;
        delivery.counters_mut().bytes_acked = 2_000;
        delivery.counters_mut().delivery_errors = 1;
        delivery.counters_mut().bytes_failed = 1_000;
        let counters = delivery.counters();
        assert_eq!(
            (counters.in_flight(), counters.in_flight_bytes()),
            (1, 1_000)
        );
        assert!(counters.room_for(bound, 9, 8_000, 100));
    }

    #[test]
    fn a_frame_runs_ahead_while_few_records_or_few_bytes_are_in_flight() {
        let ahead = RunAhead {
            bytes: 2_000,
            records: 3,
        };
        let delivery = Delivery::default();
        // Below the record count, even a frame over the byte bound joins.
        assert!(delivery.counters().may_run_ahead(ahead, 5_000));
        delivery.sending(1_500);
        delivery.sending(1_500);
        assert!(delivery.counters().may_run_ahead(ahead, 5_000));
        delivery.sending(100);
        // Three records and 3,100 bytes in flight: neither bound has room.
        assert!(!delivery.counters().may_run_ahead(ahead, 1));
        // Two acknowledged: 100 bytes in flight, and 1,900 more fit.
        delivery.counters_mut().records_acked = 2;
        delivery.counters_mut().bytes_acked = 3_000;
        delivery.sending(10);
        delivery.sending(10);
        let counters = delivery.counters();
        assert_eq!((counters.in_flight(), counters.in_flight_bytes()), (3, 120));
        assert!(counters.may_run_ahead(ahead, 1_880));
        assert!(!counters.may_run_ahead(ahead, 1_881));
    }

    #[test]
    fn silence_is_counted_from_the_first_record_until_an_acknowledgement() {
        let delivery = Delivery::default();
        let start = Instant::now();
        assert_eq!(delivery.unacknowledged_for(start), Duration::ZERO);
        delivery.sending(10);
        let later = Instant::now() + Duration::from_secs(7);
        assert!(delivery.unacknowledged_for(later) >= Duration::from_secs(7));
        delivery.counters_mut().last_ack_at = Some(later);
        assert_eq!(
            delivery.unacknowledged_for(later + Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }
}

// SPDX-License-Identifier: MPL-2.0

//! Replay of the topic the upstream `kafkasrc` reads: `?at=` on a stream
//! or on `/snapshot.jpg`, and `/timeline`. Each replay response reads with
//! a Kafka consumer of its own, on a thread of its own, so that neither the
//! live clients nor the tokio workers wait for the broker. The pure parts
//! (parameters, which frame to show, the pace, gaps) are functions apart,
//! with unit tests.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use gst::prelude::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafka;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::answers::SharedAnswers;
use super::imp::looks_like_jpeg;
use super::stream::{BOUNDARY, ChunkBody, FeedEnd, Frame, ResponseBody, Stream, send_all};
use super::transcode::{self, Transcoder};
use crate::brokerwatch::{self, BrokerWatch, LibrdkafkaClient};
use crate::kafka::{self, ClientSettings, KafkaContext};
use crate::kafkasrc::reassembly::{self, ChunkRecord, Outcome, Reassembly};
use crate::kafkasrc::{KafkaSrc, TopicSource};
use crate::time::parse_time_ms;

pub const MIN_SPEED: f64 = 0.25;
pub const MAX_SPEED: f64 = 8.0;
/// A silence longer than this (record time) is skipped by a replay rather
/// than waited out; `/timeline` probes at half of it, so such a gap shows
/// there (on topics up to 21 minutes long, see `probe_times`).
pub const MAX_PAUSE_MS: i64 = 5000;
/// A replayed frame read later than this after it was due restarts the
/// pace (see `Pacer`).
const MAX_LATE: Duration = Duration::from_millis(100);
/// How many records before the asked time a keyed stream (a camera, a
/// `key` filter) is searched for its frame at or before that time.
const LOOKBACK: i64 = 4096;
/// Frames read ahead of the pace, per replay response.
const READ_AHEAD: usize = 8;
/// How often a replay's consumer thread checks that its client is there.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long a decoding replay waits for a picture while its decoder has
/// frames queued, before it looks whether the decoder took them.
const DECODER_BUSY_WAIT: Duration = Duration::from_millis(2);
/// Elements between the sink and its kafkasrc at most.
const MAX_HOPS: usize = 32;
/// `/timeline` asks the broker for at most this many times per partition…
const TIMELINE_MAX_PROBES: i64 = 512;
/// …spaced at least this far apart, so a gap of twice this is always found.
const TIMELINE_MIN_STEP_MS: i64 = MAX_PAUSE_MS / 2;
/// How long a topic's timeline is reused.
const TIMELINE_CACHE: Duration = Duration::from_secs(5);
/// Timeline scans (of different topics) running at once, at most.
const TIMELINE_MAX_SCANS: usize = 4;

/// Why a time could not be shown exactly: it lies before the oldest or
/// after the newest record, and the nearest end is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clamp {
    Start,
    End,
}

impl Clamp {
    pub fn as_str(self) -> &'static str {
        match self {
            Clamp::Start => "start",
            Clamp::End => "end",
        }
    }
}

/// Parses the time parameter `name` (`at`, `after`): milliseconds since
/// the epoch or ISO 8601 with a zone. Times before 1970 are taken as 1970
/// (the oldest record then, clamped): Kafka reads negative times as
/// "latest" or "earliest".
pub fn parse_time(name: &str, text: &str) -> Result<i64, String> {
    parse_time_ms(text)
        .map(|ms| ms.max(0))
        .map_err(|reason| format!("{name}: {reason}"))
}

/// Elements replay may look through on its way up to the kafkasrc: they
/// pass the records' bytes on unchanged. Re-encoding elements (a decoder,
/// `jpegenc`) are copied into the replay's own pipeline (transcode.rs);
/// anything else (a crop, a privacy mask, an overlay) may change the
/// picture, which replaying the recorded records would skip.
const PASS_THROUGH: [&str; 6] = [
    "queue",
    "queue2",
    "identity",
    "capsfilter",
    "tee",
    "jpegparse",
];

/// Parses `speed`: a factor from 0.25 to 8.
pub fn parse_speed(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(speed) if (MIN_SPEED..=MAX_SPEED).contains(&speed) => Ok(speed),
        _ => Err(format!(
            "speed: {text:?} is not a number from {MIN_SPEED} to {MAX_SPEED}"
        )),
    }
}

/// Where a record is, and its timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
}

/// The frame to show for time `at`, given each partition's newest frame at
/// or before `at` (`before`) and, where there is none, its oldest frame
/// after it (`after`). `searched_to_start`: no partition has a frame before
/// those searched, so nothing in `before` means `at` precedes the
/// recording. `newer_records`: some partition has a record at or after
/// `at`, so `at` is within the recording.
pub fn choose(
    at: i64,
    before: &[Mark],
    after: &[Mark],
    searched_to_start: bool,
    newer_records: bool,
) -> Option<(Mark, Option<Clamp>)> {
    if let Some(newest) = before
        .iter()
        .max_by_key(|m| (m.timestamp_ms, m.offset))
        .copied()
    {
        let past_end = !newer_records && at > newest.timestamp_ms;
        return Some((newest, past_end.then_some(Clamp::End)));
    }
    let oldest = after
        .iter()
        .min_by_key(|m| (m.timestamp_ms, m.offset))
        .copied()?;
    Some((oldest, searched_to_start.then_some(Clamp::Start)))
}

/// When each frame of a replay is due: at the recorded pace (record
/// timestamps) times `speed`, from the first frame on. A frame older than
/// the one before, or after a silence longer than `MAX_PAUSE_MS`, follows
/// at once and the pace starts again from it; so does a frame that comes
/// more than `MAX_LATE` after it was due (the broker or a decoder was
/// slow): the frames after it keep the pace rather than rush to catch up.
#[derive(Debug)]
pub struct Pacer {
    speed: f64,
    anchor: Option<(Instant, i64)>,
    last: Option<(Instant, i64)>,
}

impl Pacer {
    pub fn new(speed: f64) -> Pacer {
        Pacer {
            speed,
            anchor: None,
            last: None,
        }
    }

    pub fn due(&mut self, timestamp_ms: i64, now: Instant) -> Instant {
        let (Some(mut anchor), Some((last_due, last_ts))) = (self.anchor, self.last) else {
            self.anchor = Some((now, timestamp_ms));
            self.last = Some((now, timestamp_ms));
            return now;
        };
        let step = timestamp_ms.saturating_sub(last_ts);
        if !(0..=MAX_PAUSE_MS).contains(&step) {
            anchor = (last_due, timestamp_ms);
            self.anchor = Some(anchor);
        }
        let record_ms = timestamp_ms.saturating_sub(anchor.1).max(0);
        let mut due = anchor
            .0
            .checked_add(Duration::from_secs_f64(
                record_ms as f64 / 1000.0 / self.speed,
            ))
            .unwrap_or(anchor.0);
        if now.saturating_duration_since(due) > MAX_LATE {
            self.anchor = Some((now, timestamp_ms));
            due = now;
        }
        self.last = Some((due, timestamp_ms));
        due
    }
}

/// The probe times of a timeline from `start` to `end`: evenly spaced, at
/// most `TIMELINE_MAX_PROBES` + 1, at least `TIMELINE_MIN_STEP_MS` apart,
/// the last one at `end`.
pub fn probe_times(start: i64, end: i64) -> Vec<i64> {
    let span = end.saturating_sub(start).max(0);
    let step = (span.saturating_add(TIMELINE_MAX_PROBES - 1) / TIMELINE_MAX_PROBES)
        .max(TIMELINE_MIN_STEP_MS);
    let mut times: Vec<i64> = (0..)
        .map(|i: i64| start.saturating_add(i.saturating_mul(step)))
        .take_while(|t| *t < end)
        .collect();
    times.push(end);
    times
}

/// The gaps between probes: `offsets[i]` are the offsets each partition
/// gives for `times[i]` (the first record at or after it). Equal offsets at
/// two consecutive times mean no record between them; adjacent such
/// stretches are merged.
pub fn gaps(times: &[i64], offsets: &[Vec<i64>]) -> Vec<[i64; 2]> {
    let mut gaps: Vec<[i64; 2]> = Vec::new();
    for i in 1..times.len().min(offsets.len()) {
        if offsets[i] != offsets[i - 1] {
            continue;
        }
        match gaps.last_mut() {
            Some(gap) if gap[1] == times[i - 1] => gap[1] = times[i],
            _ => gaps.push([times[i - 1], times[i]]),
        }
    }
    gaps
}

/// What replay reads for one stream: the upstream kafkasrc's topic, key,
/// client settings and caps, the camera when the stream shows one, and
/// the re-encoding elements between the kafkasrc and the sink.
#[derive(Debug, Clone)]
pub struct Source {
    client: ClientSettings,
    topic: String,
    key: Option<String>,
    partition: Option<i32>,
    camera: Option<String>,
    element: gst::Element,
    /// The kafkasrc's output caps: a replay's decoder gets them when its
    /// first record carries none.
    caps: gst::Caps,
    /// Re-encoding elements, upstream first: replay decodes the records
    /// through copies of them. None: the records are the JPEGs shown.
    chain: Vec<gst::Element>,
}

/// Finds the kafkasrc feeding `sink` (through elements of one input each,
/// such as `h264parse ! openh264dec ! jpegenc`) and what replay reads
/// there, or says why there is nothing to replay.
pub fn source(sink: &gst::Element, camera: Option<&str>) -> Result<Source, String> {
    let (kafkasrc, chain) = upstream_kafkasrc(sink)?;
    let TopicSource {
        client,
        topic,
        key,
        partition,
        caps,
    } = kafkasrc.topic_source();
    let topic = topic.ok_or("replay unavailable: the upstream kafkasrc has no topic")?;
    let media = caps
        .structure(0)
        .map(|s| s.name().to_string())
        .unwrap_or_default();
    if media != "image/jpeg" && chain.is_empty() {
        return Err(format!(
            "replay unavailable: replay needs JPEG records or a decoder before the sink, and \
             topic {topic} carries {media}"
        ));
    }
    Ok(Source {
        client,
        topic,
        key,
        partition,
        camera: camera.map(str::to_string),
        element: sink.clone(),
        caps,
        chain,
    })
}

/// The kafkasrc upstream of `sink` and the re-encoding elements on the
/// way, upstream first.
fn upstream_kafkasrc(sink: &gst::Element) -> Result<(KafkaSrc, Vec<gst::Element>), String> {
    let mut chain = Vec::new();
    let mut pad = sink
        .static_pad("sink")
        .ok_or("replay unavailable: the sink has no sink pad")?;
    for _ in 0..MAX_HOPS {
        let mut peer = pad
            .peer()
            .ok_or("replay unavailable: the sink is not linked")?;
        // Through a bin's ghost pad to the element behind it.
        while let Some(target) = peer
            .downcast_ref::<gst::GhostPad>()
            .and_then(|ghost| ghost.target())
        {
            peer = target;
        }
        let element = peer
            .parent_element()
            .ok_or("replay unavailable: the input comes from no element")?;
        let element = match element.downcast::<KafkaSrc>() {
            Ok(kafkasrc) => {
                chain.reverse();
                return Ok((kafkasrc, chain));
            }
            Err(element) => element,
        };
        let factory = element
            .factory()
            .map(|f| f.name().to_string())
            .unwrap_or_default();
        let inputs = element.sink_pads();
        let [input] = inputs.as_slice() else {
            return Err(format!(
                "replay unavailable: it needs a kafkasrc upstream, and the input comes from {} ({factory})",
                element.name()
            ));
        };
        if PASS_THROUGH.contains(&factory.as_str()) {
            // Looked through.
        } else if transcode::reencodes(&element) {
            chain.push(element.clone());
        } else {
            return Err(format!(
                "replay unavailable: {} ({factory}) between the kafkasrc and the sink may change the \
                 picture, which a replay of the recorded frames would not",
                element.name()
            ));
        }
        pad = input.clone();
    }
    Err("replay unavailable: no kafkasrc within 32 elements upstream".into())
}

type ReplayConsumer = BaseConsumer<KafkaContext>;

/// Closes `consumer` off the caller's path: librdkafka's close and destroy
/// take about 100 ms, which a seek should not wait for.
fn dispose(consumer: ReplayConsumer) {
    crate::runtime::RUNTIME.spawn_blocking(move || drop(consumer));
}

// SAFETY: the consumer owns its handle.
unsafe impl LibrdkafkaClient for ReplayConsumer {
    fn librdkafka_client(&self) -> *mut RDKafka {
        self.client().native_ptr()
    }
}

impl Source {
    fn consumer(&self) -> Result<ReplayConsumer, String> {
        self.create_consumer(&self.consumer_config()?)
    }

    /// A consumer for a replay's whole length, watched as kafkasrc's is
    /// (src/brokerwatch.rs).
    fn watched_consumer(&self) -> Result<(Arc<ReplayConsumer>, Option<BrokerWatch>), String> {
        let config = self.consumer_config()?;
        let consumer = Arc::new(self.create_consumer(&config)?);
        let watch = brokerwatch::watch(&self.element, &consumer, &config);
        Ok((consumer, watch))
    }

    fn create_consumer(&self, config: &ClientConfig) -> Result<ReplayConsumer, String> {
        config
            .create_with_context(KafkaContext::new(&self.element))
            .map_err(|err| format!("replay consumer: {err}"))
    }

    fn consumer_config(&self) -> Result<ClientConfig, String> {
        let defaults = [
            ("client.id", "gst-mjpeghttpsink-replay".to_string()),
            (
                "group.id",
                format!("gst-mjpeghttpsink-replay-{:016x}", kafka::random_u64()),
            ),
            ("enable.auto.commit", "false".into()),
            ("enable.auto.offset.store", "false".into()),
            // Small fetches and queue: a replay reads at the pace of one
            // camera, and twenty of them must not hold a gigabyte (a fetch
            // still returns a record larger than these).
            (
                "fetch.max.bytes",
                kafka::DEFAULT_MAX_MESSAGE_BYTES.to_string(),
            ),
            ("max.partition.fetch.bytes", "1048576".into()),
            ("fetch.wait.max.ms", "10".into()),
            ("queued.max.messages.kbytes", "2048".into()),
            ("allow.auto.create.topics", "false".into()),
            // A seek's new consumer connects to its broker at once.
            (
                "reconnect.backoff.ms",
                kafka::RECONNECT_BACKOFF_MS.to_string(),
            ),
        ];
        let mut config = self
            .client
            .client_config(&defaults)
            .map_err(|err| format!("replay consumer: {err}"))?;
        // Whatever the kafkasrc's own `config` says: a replay never commits
        // into the live consumer group, nor posts the live source's
        // statistics.
        for (key, value) in defaults.iter().filter(|(key, _)| {
            matches!(
                *key,
                "group.id" | "enable.auto.commit" | "enable.auto.offset.store"
            )
        }) {
            kafka::set_overriding(&mut config, key, value);
        }
        kafka::set_overriding(&mut config, "statistics.interval.ms", "0");
        Ok(config)
    }

    fn timeout(&self) -> Duration {
        self.client.connect_timeout()
    }

    /// Each partition read, with its low and high watermarks.
    fn partitions(&self, consumer: &ReplayConsumer) -> Result<Vec<(i32, i64, i64)>, String> {
        let ids: Vec<i32> = match self.partition {
            Some(partition) => vec![partition],
            None => {
                let metadata = consumer
                    .fetch_metadata(Some(&self.topic), self.timeout())
                    .map_err(|err| format!("topic {}: {err}", self.topic))?;
                metadata
                    .topics()
                    .iter()
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect()
            }
        };
        ids.into_iter()
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(&self.topic, p, self.timeout())
                    .map_err(|err| format!("topic {} partition {p}: {err}", self.topic))?;
                Ok((p, low, high))
            })
            .collect()
    }

    /// Per partition, the offset of the first record at or after `at_ms`
    /// (`high` when there is none).
    fn offsets_at(
        &self,
        consumer: &ReplayConsumer,
        partitions: &[(i32, i64, i64)],
        at_ms: i64,
    ) -> Result<Vec<i64>, String> {
        let mut list = TopicPartitionList::new();
        for (p, _, _) in partitions {
            list.add_partition_offset(&self.topic, *p, Offset::Offset(at_ms))
                .map_err(|err| err.to_string())?;
        }
        let found = consumer
            .offsets_for_times(list, self.timeout())
            .map_err(|err| format!("offsets for time {at_ms} in {}: {err}", self.topic))?;
        Ok(partitions
            .iter()
            .map(
                |(p, _, high)| match found.find_partition(&self.topic, *p).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) if offset >= 0 => offset.min(*high),
                    _ => *high,
                },
            )
            .collect())
    }

    /// Calls `f` with the records of each range `(partition, from, to)`
    /// (`to` included), in offset order per partition, until it returns
    /// false for that partition. Each call has a consumer of its own,
    /// assigned once: librdkafka can abort the process when an assignment
    /// changes while its fetchers stop (librdkafka issue 5573).
    /// `spare`: a consumer never assigned, used instead of a new one.
    fn read_ranges(
        &self,
        spare: &mut Option<ReplayConsumer>,
        ranges: &[(i32, i64, i64)],
        f: impl FnMut(&BorrowedMessage) -> bool,
    ) -> Result<(), String> {
        let open: HashMap<i32, (i64, i64)> = ranges
            .iter()
            .filter(|(_, from, to)| from <= to)
            .map(|&(p, from, to)| (p, (from, to)))
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let consumer = match spare.take() {
            Some(consumer) => consumer,
            None => self.consumer()?,
        };
        let read = self.read_assigned(&consumer, open, f);
        dispose(consumer);
        read
    }

    fn read_assigned(
        &self,
        consumer: &ReplayConsumer,
        mut open: HashMap<i32, (i64, i64)>,
        mut f: impl FnMut(&BorrowedMessage) -> bool,
    ) -> Result<(), String> {
        let mut list = TopicPartitionList::new();
        for (&p, &(from, _)) in &open {
            list.add_partition_offset(&self.topic, p, Offset::Offset(from))
                .map_err(|err| err.to_string())?;
        }
        consumer.assign(&list).map_err(|err| err.to_string())?;
        let deadline = Instant::now() + self.timeout();
        while !open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "topic {}: records {open:?} not read within {:?}",
                    self.topic,
                    self.timeout()
                ));
            }
            match consumer.poll(left.min(POLL_INTERVAL)) {
                Some(Ok(message)) => {
                    let partition = message.partition();
                    let Some(&(from, to)) = open.get(&partition) else {
                        continue;
                    };
                    if message.offset() < from {
                        continue;
                    }
                    if !f(&message) || message.offset() >= to {
                        open.remove(&partition);
                    }
                }
                Some(Err(err)) => return Err(format!("topic {}: {err}", self.topic)),
                None => (),
            }
        }
        Ok(())
    }

    /// The frame a record holds or completes (a chunked frame's last
    /// chunk), when it belongs to this stream: its key (or camera) matches,
    /// and it is a JPEG unless replay decodes it. Records with headers that
    /// do not parse are skipped, as kafkasrc skips them.
    fn frame<'a>(
        &self,
        chunks: &mut Chunks,
        message: &'a BorrowedMessage,
    ) -> Option<(FrameInfo, Cow<'a, [u8]>)> {
        if !self.of_stream(message) {
            return None;
        }
        let meta = kafka::record_meta(message)?;
        if !self.decodes()
            && meta
                .caps
                .is_some_and(|caps| !caps.starts_with("image/jpeg"))
        {
            return None;
        }
        let info = FrameInfo {
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis()?,
            pts: meta.pts,
            dts: meta.dts,
            flags: meta.flags,
        };
        let payload = message.payload().unwrap_or_default();
        let (info, data) = match (meta.chunk, meta.stream_id, meta.seq) {
            (Some(chunk), Some(stream_id), Some(seq)) => {
                let record = ChunkRecord {
                    partition: message.partition(),
                    offset: message.offset(),
                    stream: chunks.keys.hash_one(stream_id),
                    stream_id,
                    seq,
                    chunk,
                    value: payload,
                };
                match chunks.frames.add(record, 0, || info) {
                    Outcome::Complete { frame, first, .. } => (first, Cow::Owned(frame)),
                    _ => return None,
                }
            }
            _ => (info, Cow::Borrowed(payload)),
        };
        let whole = if self.decodes() {
            !data.is_empty()
        } else {
            looks_like_jpeg(&data)
        };
        whole.then_some((info, data))
    }

    /// Whether the record's key matches the kafkasrc's `key` and the
    /// camera (named by its record key, see cameras.rs), where set.
    fn of_stream(&self, message: &BorrowedMessage) -> bool {
        let key = message.key().and_then(|k| std::str::from_utf8(k).ok());
        [&self.key, &self.camera]
            .into_iter()
            .flatten()
            .all(|wanted| key == Some(wanted.as_str()))
    }

    /// Whether replay decodes the records rather than sending them.
    fn decodes(&self) -> bool {
        !self.chain.is_empty()
    }

    /// The frame at or before `at_ms` (see [`choose`]): in each partition
    /// the records just before the first one after `at_ms` (so that every
    /// chunk of a chunked frame of `at_ms` is read), further back while none
    /// is of this stream (up to `LOOKBACK`); the first frame after it where
    /// there is none before.
    fn find(&self, control: ReplayConsumer, at_ms: i64) -> Result<Found, FindError> {
        let partitions = self.partitions(&control).map_err(FindError::Kafka)?;
        let offsets = self
            .offsets_at(&control, &partitions, at_ms.saturating_add(1))
            .map_err(FindError::Kafka)?;
        let mut spare = Some(control);
        // (partition, low, high, first offset after at_ms)
        let mut searching: Vec<(i32, i64, i64, i64)> = partitions
            .iter()
            .zip(&offsets)
            .filter(|((_, low, high), _)| low < high)
            .map(|(&(p, low, high), &at_offset)| (p, low, high, at_offset))
            .collect();
        let all = searching.clone();
        let after_t: HashMap<i32, i64> = all.iter().map(|&(p, _, _, at)| (p, at)).collect();
        let mut before: HashMap<i32, (Mark, Bytes)> = HashMap::new();
        let mut searched_to_start = true;
        // A record of any stream stamped T itself (the window always reads
        // the records just before the first one after T).
        let mut record_at_t = false;
        let mut window: i64 = 2;
        while !searching.is_empty() {
            let from = |low: i64, at_offset: i64| at_offset.saturating_sub(window).max(low);
            // Past the first record after T only while a chunked frame of
            // this stream is unfinished: its last chunks may follow records
            // of other writers stamped later.
            let ranges: Vec<(i32, i64, i64)> = searching
                .iter()
                .map(|&(p, low, high, at_offset)| {
                    let end = at_offset.saturating_add(LOOKBACK).min(high - 1);
                    (p, from(low, at_offset), end)
                })
                .collect();
            let mut chunks = Chunks::new();
            self.read_ranges(&mut spare, &ranges, |message| {
                let partition = message.partition();
                let past_t = after_t
                    .get(&partition)
                    .is_none_or(|at_offset| message.offset() >= *at_offset);
                if past_t && chunks.frames.oldest_unfinished(partition).is_none() {
                    return false;
                }
                record_at_t |= message.timestamp().to_millis() == Some(at_ms);
                if let Some((info, data)) = self.frame(&mut chunks, message)
                    && info.timestamp_ms <= at_ms
                    && before
                        .get(&partition)
                        .is_none_or(|(mark, _)| mark.timestamp_ms <= info.timestamp_ms)
                {
                    before.insert(partition, (info.mark(partition), into_bytes(data)));
                }
                true
            })
            .map_err(FindError::Kafka)?;
            searching.retain(|&(p, low, _, at_offset)| {
                !before.contains_key(&p) && from(low, at_offset) > low
            });
            if window >= LOOKBACK {
                searched_to_start &= searching.is_empty();
                break;
            }
            window = window.saturating_mul(8).min(LOOKBACK);
        }
        let unfound: Vec<(i32, i64, i64, i64)> = all
            .iter()
            .filter(|(p, ..)| !before.contains_key(p))
            .copied()
            .collect();
        let after = self
            .first_frames(&mut spare, &unfound)
            .map_err(FindError::Kafka)?;
        if let Some(unused) = spare {
            dispose(unused);
        }
        let marks = |found: &HashMap<i32, (Mark, Bytes)>| {
            found.values().map(|(m, _)| *m).collect::<Vec<_>>()
        };
        let newer_records =
            record_at_t || all.iter().any(|(_, _, high, at_offset)| at_offset < high);
        let (mark, clamp) = choose(
            at_ms,
            &marks(&before),
            &marks(&after),
            searched_to_start,
            newer_records,
        )
        .ok_or(FindError::Empty)?;
        let jpeg = before
            .into_values()
            .chain(after.into_values())
            .find(|(m, _)| *m == mark)
            .map(|(_, jpeg)| jpeg)
            .ok_or(FindError::Empty)?;
        Ok(Found {
            mark,
            jpeg,
            clamp,
            partitions,
            next_offsets: offsets,
        })
    }
}

impl Source {
    /// Per partition `(partition, low, high, from)`, the first frame of
    /// this stream at or after offset `from` (up to `LOOKBACK` records on).
    fn first_frames(
        &self,
        spare: &mut Option<ReplayConsumer>,
        partitions: &[(i32, i64, i64, i64)],
    ) -> Result<HashMap<i32, (Mark, Bytes)>, String> {
        let ranges: Vec<(i32, i64, i64)> = partitions
            .iter()
            .filter(|(_, _, high, from)| from < high)
            .map(|&(p, _, high, from)| (p, from, from.saturating_add(LOOKBACK).min(high - 1)))
            .collect();
        let mut first = HashMap::new();
        let mut chunks = Chunks::new();
        self.read_ranges(spare, &ranges, |message| {
            let Some((info, data)) = self.frame(&mut chunks, message) else {
                return true;
            };
            first.insert(
                message.partition(),
                (info.mark(message.partition()), into_bytes(data)),
            );
            false
        })?;
        Ok(first)
    }

    /// The first frame after `after_ms` (a step forward), else the newest
    /// frame, marked `Clamp::End`.
    fn find_after(&self, control: ReplayConsumer, after_ms: i64) -> Result<Found, FindError> {
        let partitions = self.partitions(&control).map_err(FindError::Kafka)?;
        let offsets = self
            .offsets_at(&control, &partitions, after_ms.saturating_add(1))
            .map_err(FindError::Kafka)?;
        let mut spare = Some(control);
        let searched: Vec<(i32, i64, i64, i64)> = partitions
            .iter()
            .zip(&offsets)
            .map(|(&(p, low, high), &from)| (p, low, high, from))
            .collect();
        let next = self
            .first_frames(&mut spare, &searched)
            .map_err(FindError::Kafka)?
            .into_values()
            .min_by_key(|(m, _)| (m.timestamp_ms, m.offset));
        match next {
            Some((mark, jpeg)) => Ok(Found {
                mark,
                jpeg,
                clamp: None,
                partitions,
                next_offsets: offsets,
            }),
            None => {
                let control = match spare {
                    Some(unused) => unused,
                    None => self.consumer().map_err(FindError::Kafka)?,
                };
                let mut newest = self.find(control, after_ms)?;
                newest.clamp = Some(Clamp::End);
                Ok(newest)
            }
        }
    }
}

impl Source {
    /// The offset of the newest record of this stream a decoder can start
    /// at (no `delta-unit` flag) at or before `mark`, in its partition
    /// (oldest offset `low`), looking at that record (every record of a
    /// JPEG stream is one), then back 64 (two seconds of 30 fps in one
    /// read), 512 and at most `LOOKBACK` records.
    /// Also gives the caps the record carries.
    fn keyframe_at_or_before(
        &self,
        mark: Mark,
        low: i64,
    ) -> Result<(i64, Option<gst::Caps>), FindError> {
        let mut window: i64 = 1;
        loop {
            let from = mark.offset.saturating_sub(window - 1).max(low);
            let mut newest = None;
            self.read_ranges(
                &mut None,
                &[(mark.partition, from, mark.offset)],
                |message| {
                    if let Some(meta) = kafka::record_meta(message)
                        && self.of_stream(message)
                        && meta.starts_keyframe()
                    {
                        let caps = meta.caps.and_then(|caps| caps.parse::<gst::Caps>().ok());
                        newest = Some((message.offset(), caps));
                    }
                    true
                },
            )
            .map_err(FindError::Kafka)?;
            if let Some(found) = newest {
                return Ok(found);
            }
            if from <= low || window >= LOOKBACK {
                return Err(FindError::NoKeyframe {
                    at_ms: mark.timestamp_ms,
                    searched: mark.offset.saturating_sub(from).saturating_add(1),
                });
            }
            window = if window == 1 {
                64
            } else {
                window.saturating_mul(8)
            }
            .min(LOOKBACK);
        }
    }

    /// Decodes this stream through copies of its re-encoding elements,
    /// from the keyframe at or before `mark` on, and calls `on_picture`
    /// with each picture from `mark`'s time on until it returns false or
    /// `gone()` holds. `range`: `mark`'s partition with its low and high
    /// watermarks. Should the topic end before the first picture, the
    /// decoder gives out what it holds and the replay ends there.
    fn decode_from(
        &self,
        mark: Mark,
        range: (i32, i64, i64),
        gone: impl Fn() -> bool,
        on_picture: impl FnMut(i64, Bytes) -> bool,
    ) -> Result<(), FindError> {
        let (keyframe, caps) = self.keyframe_at_or_before(mark, range.1)?;
        let (consumer, watch) = self.watched_consumer().map_err(FindError::Kafka)?;
        let caps = caps.as_ref().unwrap_or(&self.caps);
        let transcoder = Transcoder::new(caps, &self.chain).map_err(FindError::Decode);
        transcoder.and_then(|mut transcoder| {
            let decoded = self.decode_with(
                &consumer,
                &mut transcoder,
                (mark, keyframe, range),
                gone,
                on_picture,
            );
            // Stopping the pipeline and closing the consumer take time a
            // snapshot's answer need not wait for.
            crate::runtime::RUNTIME.spawn_blocking(move || drop((transcoder, watch, consumer)));
            decoded
        })
    }

    fn decode_with(
        &self,
        consumer: &ReplayConsumer,
        transcoder: &mut Transcoder,
        (mark, keyframe, range): (Mark, i64, (i32, i64, i64)),
        gone: impl Fn() -> bool,
        mut on_picture: impl FnMut(i64, Bytes) -> bool,
    ) -> Result<(), FindError> {
        let (partition, _, high) = range;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, partition, Offset::Offset(keyframe))
            .and_then(|()| consumer.assign(&list))
            .map_err(|err| FindError::Kafka(err.to_string()))?;
        let deadline = Instant::now() + self.timeout();
        let mut shown = false;
        let mut draining = false;
        let mut next_offset = keyframe;
        let mut chunks = Chunks::new();
        while !gone() {
            if !shown && Instant::now() > deadline {
                return Err(FindError::Decode(format!(
                    "no picture decoded within {:?}",
                    self.timeout()
                )));
            }
            // Records are read only as fast as the decoder takes them; the
            // frames before the one asked give no picture to wait for.
            let busy = draining || transcoder.queued() >= transcode::MAX_QUEUED;
            let wait = if draining {
                POLL_INTERVAL
            } else if busy {
                DECODER_BUSY_WAIT
            } else {
                Duration::ZERO
            };
            if let Some((ts, jpeg)) = transcoder.pull(wait).map_err(FindError::Decode)? {
                if shown || ts >= mark.timestamp_ms {
                    shown = true;
                    if !on_picture(ts, jpeg) {
                        break;
                    }
                }
                continue;
            }
            if transcoder.is_done() {
                return if shown {
                    Ok(())
                } else {
                    Err(FindError::Decode(
                        "the decoder gave no picture of the records replayed".into(),
                    ))
                };
            }
            if busy {
                continue;
            }
            match consumer.poll(POLL_INTERVAL) {
                Some(Ok(message)) if message.partition() == partition => {
                    next_offset = message.offset().saturating_add(1);
                    if let Some((info, data)) = self.frame(&mut chunks, &message) {
                        // Frames before the one asked are decoded, not
                        // shown (nor encoded).
                        let visible = shown || info.timestamp_ms >= mark.timestamp_ms;
                        transcoder
                            .push(&info, data.into_owned(), visible)
                            .map_err(FindError::Decode)?;
                    }
                }
                Some(Ok(_)) => (),
                Some(Err(err)) => {
                    gst::debug!(super::CAT, obj = self.element, "replay: {err}");
                }
                None if !shown && next_offset >= high => {
                    transcoder.finish();
                    draining = true;
                }
                None => (),
            }
        }
        Ok(())
    }
}

/// A frame as replay reads it: where it starts (a chunked frame: its chunk
/// 0) and what its first record's headers say.
#[derive(Debug, Clone)]
pub struct FrameInfo {
    offset: i64,
    pub timestamp_ms: i64,
    pub pts: Option<gst::ClockTime>,
    pub dts: Option<gst::ClockTime>,
    pub flags: gst::BufferFlags,
}

impl FrameInfo {
    fn mark(&self, partition: i32) -> Mark {
        Mark {
            partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// Puts chunked frames (wire format 2: frames over the record limit)
/// together while one consumer of a replay reads, as kafkasrc does (with
/// its default bound on bytes held), streams told apart by a keyed hash of
/// their id.
struct Chunks {
    frames: Reassembly<FrameInfo>,
    keys: RandomState,
}

impl Chunks {
    fn new() -> Chunks {
        Chunks {
            frames: Reassembly::new(
                reassembly::DEFAULT_MAX_PARTIAL_BYTES,
                reassembly::DEFAULT_MAX_PARTIAL_AGE_MS,
            ),
            keys: RandomState::new(),
        }
    }
}

fn into_bytes(data: Cow<'_, [u8]>) -> Bytes {
    match data {
        Cow::Borrowed(data) => Bytes::copy_from_slice(data),
        Cow::Owned(data) => Bytes::from(data),
    }
}

/// The frame a replay starts at.
#[derive(Debug)]
pub struct Found {
    pub mark: Mark,
    /// The record's JPEG; for a stream replay decodes, the record until
    /// the picture decoded from it replaces it.
    pub jpeg: Bytes,
    pub clamp: Option<Clamp>,
    partitions: Vec<(i32, i64, i64)>,
    /// Per partition, the first record after the time asked, where
    /// a replay reads on (after `mark` in its own partition): no frame of
    /// the stream lies between `mark` and the time asked.
    next_offsets: Vec<i64>,
}

#[derive(Debug)]
pub enum FindError {
    /// The stream has no frame in the topic.
    Empty,
    /// No keyframe in the `searched` records up to the frame at `at_ms`
    /// to decode it from.
    NoKeyframe {
        at_ms: i64,
        searched: i64,
    },
    Kafka(String),
    /// The replay's decoder failed.
    Decode(String),
}

impl Found {
    /// The found frame's partition, with its low and high watermarks.
    fn range(&self) -> (i32, i64, i64) {
        self.partitions
            .iter()
            .find(|(p, _, _)| *p == self.mark.partition)
            .copied()
            .unwrap_or((
                self.mark.partition,
                self.mark.offset,
                self.mark.offset.saturating_add(1),
            ))
    }
}

impl std::fmt::Display for FindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FindError::Empty => f.write_str("the topic holds no frame of this stream"),
            FindError::NoKeyframe { at_ms, searched } => write!(
                f,
                "no keyframe of this stream in the {searched} records up to its frame of {at_ms} ms \
                 to decode it from"
            ),
            FindError::Kafka(reason) => write!(f, "cannot read the topic: {reason}"),
            FindError::Decode(reason) => write!(f, "cannot decode the replay: {reason}"),
        }
    }
}

/// The frame at or before `at_ms` (or with `after`, the first one after
/// it), read by consumers of its own off the tokio workers. `slot` stays
/// taken until the search ends, even when the request is gone.
pub async fn snapshot(
    source: Source,
    at_ms: i64,
    after: bool,
    slot: Slot,
) -> Result<Found, FindError> {
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let consumer = source.consumer().map_err(FindError::Kafka)?;
        let mut found = if after {
            source.find_after(consumer, at_ms)
        } else {
            source.find(consumer, at_ms)
        }?;
        if source.decodes() {
            let mut picture = None;
            source.decode_from(
                found.mark,
                found.range(),
                || false,
                |ts, jpeg| {
                    picture = Some((ts, jpeg));
                    false
                },
            )?;
            let (ts, jpeg) = picture.ok_or(FindError::Empty)?;
            found.mark.timestamp_ms = ts;
            found.jpeg = jpeg;
        }
        Ok(found)
    })
    .await
    .unwrap_or_else(|err| Err(FindError::Kafka(err.to_string())))
}

/// A stream's replay responses: how many are open, and the limit.
#[derive(Debug, Default)]
pub struct Gate {
    max: usize,
    active: Arc<AtomicUsize>,
    total: AtomicU64,
    refused: AtomicU64,
}

/// Counts a replay response as open until dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct GateStats {
    pub replay_clients: u64,
    pub replay_clients_total: u64,
    pub replay_refused: u64,
}

impl Gate {
    pub fn new(max: u32) -> Gate {
        Gate {
            max: max as usize,
            ..Gate::default()
        }
    }

    /// A slot, or `None` when `max` replay responses are open.
    pub fn enter(&self) -> Option<Slot> {
        let taken = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |active| {
                (active < self.max).then_some(active + 1)
            });
        if taken.is_err() {
            self.refused.fetch_add(1, Ordering::AcqRel);
            return None;
        }
        self.total.fetch_add(1, Ordering::AcqRel);
        Some(Slot(self.active.clone()))
    }

    pub fn stats(&self) -> GateStats {
        GateStats {
            replay_clients: self.active.load(Ordering::Acquire) as u64,
            replay_clients_total: self.total.load(Ordering::Acquire),
            replay_refused: self.refused.load(Ordering::Acquire),
        }
    }
}

/// Starts a replay of `source` from the frame at or before `at_ms` at
/// `speed`: a thread reads records with a consumer of its own and a task
/// sends them paced as multipart parts. Returns the frame it starts at and
/// the body, once that frame is found. Both end when the client goes away
/// (or its socket stalls: then `on_stall` runs) or the stream stops;
/// `slot` stays taken until both have ended.
pub async fn start_replay(
    stream: Arc<Stream>,
    source: Source,
    at_ms: i64,
    speed: f64,
    slot: Slot,
    on_stall: impl FnOnce() + Send + 'static,
) -> Result<(Mark, Option<Clamp>, ResponseBody), FindError> {
    let (found_tx, found_rx) = oneshot::channel();
    let (frames_tx, frames_rx) = mpsc::channel(READ_AHEAD);
    let slot = Arc::new(slot);
    let reader_slot = slot.clone();
    std::thread::Builder::new()
        .name("mjpeg-replay".into())
        .spawn(move || {
            let _slot = reader_slot;
            read_replay(source, at_ms, found_tx, frames_tx);
        })
        .map_err(|err| FindError::Kafka(format!("cannot start a replay thread: {err}")))?;
    let found = found_rx
        .await
        .unwrap_or_else(|_| Err(FindError::Kafka("the replay thread ended".into())))?;
    let (mark, clamp) = (found.mark, found.clamp);
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let _slot = slot;
        let end = send_replay(&stream, found, frames_rx, speed, &tx).await;
        if let FeedEnd::Stalled = end {
            on_stall();
        }
    });
    Ok((mark, clamp, ChunkBody::boxed_body(rx)))
}

/// The consumer thread of one replay: finds the first frame, then reads on
/// from there until the receiving task is gone.
fn read_replay(
    source: Source,
    at_ms: i64,
    found_tx: oneshot::Sender<Result<Found, FindError>>,
    frames_tx: mpsc::Sender<(i64, Bytes)>,
) {
    let control = match source.consumer() {
        Ok(consumer) => consumer,
        Err(reason) => {
            let _ = found_tx.send(Err(FindError::Kafka(reason)));
            return;
        }
    };
    let found = match source.find(control, at_ms) {
        Ok(found) => found,
        Err(err) => {
            let _ = found_tx.send(Err(err));
            return;
        }
    };
    if source.decodes() {
        read_decoded(&source, found, found_tx, &frames_tx);
        return;
    }
    let start = found.mark;
    let partitions = found.partitions.clone();
    let positions = found.next_offsets.clone();
    if found_tx.send(Ok(found)).is_err() {
        return;
    }
    // A consumer of its own, assigned once (see read_ranges), with no
    // request before its first fetch: the ListOffsets it used to send
    // first took 700 ms in two of about sixty runs of the 4× pace test
    // (logged in one: 702 ms), a stall right after the first frame. The
    // first frame's partition reads on from the record after it, the
    // others from the time asked.
    // Whichever of the two goes first, the consumer is destroyed once.
    let (consumer, _watch) = match source.watched_consumer() {
        Ok(watched) => watched,
        Err(reason) => {
            gst::warning!(super::CAT, obj = source.element, "replay: {reason}");
            return;
        }
    };
    let mut list = TopicPartitionList::new();
    for (&(p, _, _), &offset) in partitions.iter().zip(&positions) {
        let offset = if p == start.partition {
            start.offset.saturating_add(1)
        } else {
            offset
        };
        if list
            .add_partition_offset(&source.topic, p, Offset::Offset(offset))
            .is_err()
        {
            return;
        }
    }
    if let Err(err) = consumer.assign(&list) {
        gst::warning!(super::CAT, obj = source.element, "replay: {err}");
        return;
    }
    let mut chunks = Chunks::new();
    while !frames_tx.is_closed() {
        match consumer.poll(POLL_INTERVAL) {
            Some(Ok(message)) => {
                if let Some((info, jpeg)) = source.frame(&mut chunks, &message)
                    && frames_tx
                        .blocking_send((info.timestamp_ms, into_bytes(jpeg)))
                        .is_err()
                {
                    return;
                }
            }
            Some(Err(err)) => {
                gst::debug!(super::CAT, obj = source.element, "replay: {err}");
            }
            None => (),
        }
    }
}

/// `read_replay` for a stream replay decodes: the first picture answers
/// `found_tx`, the others go to `frames_tx`.
fn read_decoded(
    source: &Source,
    found: Found,
    found_tx: oneshot::Sender<Result<Found, FindError>>,
    frames_tx: &mpsc::Sender<(i64, Bytes)>,
) {
    let (mark, range) = (found.mark, found.range());
    let mut first = Some((found, found_tx));
    let decoded = source.decode_from(
        mark,
        range,
        || frames_tx.is_closed(),
        |ts, jpeg| match first.take() {
            Some((mut found, found_tx)) => {
                // The mark's own record may give no picture (the decoder
                // dropped it): the first picture's time is then later.
                found.mark.timestamp_ms = ts;
                found.jpeg = jpeg;
                found_tx.send(Ok(found)).is_ok()
            }
            None => frames_tx.blocking_send((ts, jpeg)).is_ok(),
        },
    );
    match (decoded, first) {
        (Err(err), Some((_, found_tx))) => {
            let _ = found_tx.send(Err(err));
        }
        (Err(err), None) => {
            gst::warning!(super::CAT, obj = source.element, "replay: {err}");
        }
        (Ok(()), Some((_, found_tx))) => {
            let _ = found_tx.send(Err(FindError::Empty));
        }
        (Ok(()), None) => (),
    }
}

async fn send_replay(
    stream: &Stream,
    first: Found,
    mut frames: mpsc::Receiver<(i64, Bytes)>,
    speed: f64,
    tx: &mpsc::Sender<Bytes>,
) -> FeedEnd {
    let timeout = stream.send_timeout();
    let keepalive = stream.keepalive();
    let stopped = stream.stopped();
    tokio::pin!(stopped);
    let opening = Bytes::from(format!("--{BOUNDARY}\r\n"));
    if let Err(end) = send_all(tx, [opening], timeout).await {
        return end;
    }
    let mut pacer = Pacer::new(speed);
    let mut next = Some((first.mark.timestamp_ms, first.jpeg));
    // The last frame sent and when: resent after `keepalive` of silence,
    // as live does, so that browsers paint it.
    let mut last: Option<(Frame, Instant)> = None;
    let mut seq = 0;
    loop {
        let (ts, jpeg) = match next.take() {
            Some(frame) => frame,
            None => loop {
                let resend = last.as_ref().map(|(_, at)| *at + keepalive);
                tokio::select! {
                    frame = frames.recv() => match frame {
                        Some(frame) => break frame,
                        None => return FeedEnd::Done,
                    },
                    _ = sleep_until_some(resend) => {
                        if let Err(end) = resend_last(&mut last, tx, timeout).await {
                            return end;
                        }
                    }
                    _ = tx.closed() => return FeedEnd::Done,
                    _ = &mut stopped => return FeedEnd::Done,
                }
            },
        };
        let due = pacer.due(ts, Instant::now());
        loop {
            let resend = last
                .as_ref()
                .map(|(_, at)| *at + keepalive)
                .filter(|at| *at < due);
            tokio::select! {
                _ = tokio::time::sleep_until(resend.unwrap_or(due).into()) => {
                    if resend.is_none() {
                        break;
                    }
                    if let Err(end) = resend_last(&mut last, tx, timeout).await {
                        return end;
                    }
                }
                _ = tx.closed() => return FeedEnd::Done,
                _ = &mut stopped => return FeedEnd::Done,
            }
        }
        seq += 1;
        let captured = UNIX_EPOCH + Duration::from_millis(ts.max(0) as u64);
        let frame = Frame::new(seq, jpeg, captured);
        if let Err(end) = send_all(tx, frame.part(false), timeout).await {
            return end;
        }
        last = Some((frame, Instant::now()));
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn resend_last(
    last: &mut Option<(Frame, Instant)>,
    tx: &mpsc::Sender<Bytes>,
    timeout: Duration,
) -> Result<(), FeedEnd> {
    if let Some((frame, at)) = last {
        send_all(tx, frame.part(false), timeout).await?;
        *at = Instant::now();
    }
    Ok(())
}

/// One stream's entry in `/timeline`.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub path: String,
    /// The oldest and newest record timestamps (ms); none when the topic
    /// is empty.
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// Stretches (ms) in which no record was written.
    pub gaps: Vec<[i64; 2]>,
    /// Why the stream cannot be replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// The range and gaps of a topic, as found.
#[derive(Debug, Clone)]
struct Range {
    start: Option<i64>,
    end: Option<i64>,
    gaps: Vec<[i64; 2]>,
}

type RangeKey = (String, String, Option<i32>);

/// Ranges by brokers, topic and partition: a wall of cameras on one topic,
/// or many tabs, ask the broker once.
static RANGES: LazyLock<SharedAnswers<RangeKey, Range>> =
    LazyLock::new(|| SharedAnswers::new(TIMELINE_CACHE, TIMELINE_MAX_SCANS));

/// The retained range of `source`'s topic and its gaps. The range is read
/// from the records at each partition's low and high watermarks; the gaps
/// by asking offsets-for-times at `probe_times` (at most 513 requests per
/// scan, all partitions in each). Kept a few seconds, one scan per topic
/// at a time (answers.rs).
pub async fn timeline(path: String, source: Source) -> Timeline {
    let key = (
        source.client.bootstrap_servers.clone(),
        source.topic.clone(),
        source.partition,
    );
    let range = RANGES.get(key, move || read_range_of(&source)).await;
    match range {
        Ok(range) => Timeline {
            path,
            start: range.start,
            end: range.end,
            gaps: range.gaps,
            unavailable: None,
        },
        Err(reason) => unavailable(path, format!("cannot read the topic: {reason}")),
    }
}

pub fn unavailable(path: String, reason: String) -> Timeline {
    Timeline {
        path,
        start: None,
        end: None,
        gaps: Vec::new(),
        unavailable: Some(reason),
    }
}

fn read_range_of(source: &Source) -> Result<Range, String> {
    // The whole topic: records of every key and camera.
    let topic_wide = Source {
        key: None,
        camera: None,
        ..source.clone()
    };
    let consumer = topic_wide.consumer()?;
    let partitions = topic_wide.partitions(&consumer)?;
    let mut start: Option<i64> = None;
    let mut end: Option<i64> = None;
    let filled: Vec<&(i32, i64, i64)> = partitions
        .iter()
        .filter(|(_, low, high)| low < high)
        .collect();
    let oldest: Vec<(i32, i64, i64)> = filled.iter().map(|&&(p, low, _)| (p, low, low)).collect();
    let newest: Vec<(i32, i64, i64)> = filled
        .iter()
        .map(|&&(p, _, high)| (p, high - 1, high - 1))
        .collect();
    for ranges in [oldest, newest] {
        topic_wide.read_ranges(&mut None, &ranges, |message| {
            if let Some(ts) = message.timestamp().to_millis() {
                start = Some(start.map_or(ts, |s| s.min(ts)));
                end = Some(end.map_or(ts, |e| e.max(ts)));
            }
            false
        })?;
    }
    let gaps = match (start, end) {
        (Some(start), Some(end)) => {
            // A slow broker gets the connect timeout for all the probes
            // (each has it too): the gaps found by then are the answer.
            let deadline = Instant::now() + topic_wide.timeout();
            let times = probe_times(start, end);
            let mut offsets = Vec::with_capacity(times.len());
            for time in &times {
                if Instant::now() >= deadline {
                    gst::debug!(
                        super::CAT,
                        obj = source.element,
                        "timeline of {}: {} of {} probes within {:?}",
                        source.topic,
                        offsets.len(),
                        times.len(),
                        topic_wide.timeout()
                    );
                    break;
                }
                offsets.push(topic_wide.offsets_at(&consumer, &partitions, *time)?);
            }
            gaps(&times, &offsets)
        }
        _ => Vec::new(),
    };
    dispose(consumer);
    Ok(Range { start, end, gaps })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(partition: i32, offset: i64, timestamp_ms: i64) -> Mark {
        Mark {
            partition,
            offset,
            timestamp_ms,
        }
    }

    fn source(config: Option<&str>) -> Source {
        gst::init().unwrap();
        Source {
            client: ClientSettings {
                config: config.map(|c| c.parse().unwrap()),
                ..ClientSettings::default()
            },
            topic: "cam1".into(),
            key: None,
            partition: None,
            camera: None,
            element: gst::ElementFactory::make("fakesink").build().unwrap(),
            caps: gst::Caps::builder("image/jpeg").build(),
            chain: Vec::new(),
        }
    }

    #[test]
    fn replay_consumers_default_to_a_20_ms_reconnect_backoff() {
        let backoff = |source: Source| {
            let config = source.consumer_config().unwrap();
            kafka::setting(&config, "reconnect.backoff.ms").map(str::to_owned)
        };
        assert_eq!(backoff(source(None)).as_deref(), Some("20"));
        // The kafkasrc's own config still decides.
        assert_eq!(
            backoff(source(Some("config,reconnect.backoff.ms=(string)100"))).as_deref(),
            Some("100")
        );
    }

    #[test]
    fn at_and_speed_are_checked() {
        assert_eq!(parse_time("at", "1795611600250"), Ok(1_795_611_600_250));
        assert_eq!(
            parse_time("at", "2026-11-25T13:00:00.25Z"),
            Ok(1_795_611_600_250)
        );
        assert!(
            parse_time("after", "yesterday")
                .unwrap_err()
                .starts_with("after: ")
        );
        assert!(parse_time("at", "2026-11-25T13:00:00").is_err());
        assert_eq!(parse_time("at", "1969-12-31T23:59:59.999Z"), Ok(0));
        assert_eq!(parse_speed("1"), Ok(1.0));
        assert_eq!(parse_speed("0.25"), Ok(0.25));
        assert_eq!(parse_speed("8"), Ok(8.0));
        for bad in ["0", "0.2", "8.5", "-1", "fast", "NaN", "inf", ""] {
            assert!(parse_speed(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_frame_at_or_before_is_chosen() {
        let before = [mark(0, 9, 1000), mark(1, 4, 1200)];
        let after = [mark(0, 10, 1300), mark(1, 5, 1250)];
        assert_eq!(
            choose(1240, &before, &after, false, true),
            Some((mark(1, 4, 1200), None))
        );
        assert_eq!(
            choose(1240, &before, &[], true, true),
            Some((mark(1, 4, 1200), None))
        );
        // An exact time is its own frame, not past the end.
        assert_eq!(
            choose(1200, &[mark(0, 4, 1200)], &[], true, false),
            Some((mark(0, 4, 1200), None))
        );
        assert_eq!(
            choose(5000, &[mark(0, 4, 1200)], &[], true, false),
            Some((mark(0, 4, 1200), Some(Clamp::End)))
        );
        assert_eq!(
            choose(10, &[], &after, true, true),
            Some((mark(1, 5, 1250), Some(Clamp::Start)))
        );
        // Not searched back to the start: the next frame, but not a clamp.
        assert_eq!(
            choose(10, &[], &after, false, true),
            Some((mark(1, 5, 1250), None))
        );
        assert_eq!(choose(10, &[], &[], true, false), None);
    }

    #[test]
    fn frames_follow_the_recorded_pace_times_speed() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(4.0);
        assert_eq!(pacer.due(1000, t0), t0);
        assert_eq!(pacer.due(1100, t0), t0 + Duration::from_millis(25));
        assert_eq!(pacer.due(2000, t0), t0 + Duration::from_millis(250));
        // Scheduled from the first frame, not from when each was asked: a
        // frame read a little late keeps its time.
        let asked = t0 + Duration::from_millis(550);
        assert_eq!(pacer.due(3000, asked), t0 + Duration::from_millis(500));
        // A long silence is skipped: the next frame follows at once.
        assert_eq!(pacer.due(60_000, asked), t0 + Duration::from_millis(500));
        assert_eq!(pacer.due(60_400, asked), t0 + Duration::from_millis(600));
        // Out of order: at once, and the pace goes on from it.
        assert_eq!(pacer.due(60_200, asked), t0 + Duration::from_millis(600));
        assert_eq!(pacer.due(60_300, asked), t0 + Duration::from_millis(625));
        // Read long after it was due (a stall): at once, and the frames
        // after it keep the pace from there instead of rushing.
        let stalled = t0 + Duration::from_secs(2);
        assert_eq!(pacer.due(60_400, stalled), stalled);
        assert_eq!(
            pacer.due(60_500, stalled),
            stalled + Duration::from_millis(25)
        );
        let mut slow = Pacer::new(0.25);
        slow.due(0, t0);
        assert_eq!(slow.due(100, t0), t0 + Duration::from_millis(400));
    }

    #[test]
    fn probes_are_bounded_and_end_at_the_end() {
        assert_eq!(probe_times(0, 0), vec![0]);
        assert_eq!(probe_times(0, 6000), vec![0, 2500, 5000, 6000]);
        let day = probe_times(0, 86_400_000);
        assert!(
            day.len() <= TIMELINE_MAX_PROBES as usize + 1,
            "{}",
            day.len()
        );
        assert_eq!(day.last(), Some(&86_400_000));
        assert!(day.windows(2).all(|w| w[1] > w[0]));
    }

    #[test]
    fn equal_offsets_between_probes_are_gaps() {
        let times = [0, 10, 20, 30, 40, 50];
        let offsets = [
            vec![0, 0],
            vec![5, 0],
            vec![5, 0],
            vec![5, 0],
            vec![9, 0],
            vec![9, 3],
        ];
        assert_eq!(gaps(&times, &offsets), vec![[10, 30]]);
        assert_eq!(gaps(&times, &offsets[..1]), Vec::<[i64; 2]>::new());
    }
}

// SPDX-License-Identifier: MPL-2.0

/**
 * SECTION:element-kafkasrc
 *
 * Consumes an Apache Kafka topic and pushes one buffer per record. Records
 * written by `kafkasink` are rebuilt exactly (caps, timing, flags; see
 * docs/wire-format.md); records of plain producers (bare JPEG values, as the
 * kafka-python tutorial writes) get the `caps` property.
 *
 * Without `group-id` every element has its own position and sees every
 * record, and nothing is committed. With `group-id` it joins a consumer
 * group: partitions are shared between members, and the offset of each
 * buffer is committed once it was pushed, with its stream id and sequence
 * number as the commit's metadata (and those of the other streams pushed
 * since the committed offset, when an unfinished chunked frame holds it
 * back). A member that takes a partition over (after a restart, a crash or
 * a rebalance) resumes right after the last buffer its predecessor pushed
 * and drops records of those streams at or below their sequence numbers.
 *
 * Each buffer carries the record timestamp (the capture time) as a
 * `timestamp/x-unix` reference timestamp meta, and the record it was made
 * of as a custom meta `GstKafkaRecordMeta` (fields `partition`, `offset`,
 * and when the record has them `key`, `stream-id`, `timestamp-ms`; read it
 * with `gst_buffer_get_custom_meta (buffer, "GstKafkaRecordMeta")`):
 * mjpeghttpsink serves each camera of a topic by its key.
 *
 * Started before its topic exists, the element waits for it, as Kafka's own
 * consumers do (a warning after a few seconds says so, and `stats` field
 * `waiting-for-topic` is true meanwhile); every record of a topic created
 * after start is read, whatever `start-from`. `wait-for-topic=false` makes
 * a missing topic an error at start instead.
 *
 * A viewer joining an H.264/H.265 stream mid-way waits for the next keyframe
 * (records flagged delta-unit before it are skipped and counted), so the
 * decoder never sees undecodable frames.
 *
 * Frames that `kafkasink` cut into chunk records (frames larger than the
 * Kafka record limit) are pushed whole, as one buffer, once all their
 * chunks arrived, never in part. A frame missing a chunk (its writer
 * killed mid-frame, a chunk gone) is dropped, counted in `stats` field
 * `incomplete-frames` and warned about. Unfinished frames are held in at
 * most `max-partial-bytes`; past it the oldest is dropped with a warning.
 * A frame whose writer died mid-frame is given up (counted, warned about,
 * its memory and the commit it held back released) once its partition
 * carries records stamped more than `max-partial-age-ms` after it started:
 * the default, 330 s, is kafkasink's longest retry of a record
 * (`message-timeout-ms`, 300 s) plus a margin.
 * Starting, seeking or catching up inside a chunked frame skips to the
 * next frame without counting a loss (`chunks-skipped`); a frame still
 * unfinished when `stop-at` ends the stream is not a loss either: it is
 * counted in `frames-cut-at-end`, without a warning; with `group-id`,
 * offsets are committed only up to the first chunk of a frame still being
 * put together, so a successor resumes on a frame boundary.
 *
 * Records that cannot be used (empty, undecodable headers, caps that do not
 * parse, or in `original` mode a timestamp before 1970 or after 2554) are
 * skipped and counted in `bad-records`; a warning names the first of them
 * and at most one more per second, with the number skipped since.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 kafkasrc topic=cam1 ! mjpeghttpsink port=8080
 * gst-launch-1.0 kafkasrc topic=cam1 start-from=earliest stop-at=end ! multifilesink location=frame-%05d.jpg
 * gst-launch-1.0 kafkasrc topic=cam1 start-from=timestamp start-time=2026-11-25T13:00:00Z \
 *     timestamp-mode=original ! jpegdec ! autovideosink
 * gst-launch-1.0 kafkasrc topic=cams key=door group-id=analytics ! jpegdec ! fakesink
 * ]|
 *
 * ## URIs
 * `kafka://host:port[,host:port…]/topic?property=value&…` (the `uri`
 * property, and what playbin, uridecodebin and gst-discoverer-1.0 use):
 * the brokers, the topic and any property as a percent-encoded query
 * parameter. Without `start-from` in the query a URI starts at the newest
 * record a decoder can start at (`start-from=last`), so a player shows a
 * picture at once and gst-discoverer-1.0 reports the topic's caps.
 * |[
 * gst-play-1.0 "kafka://127.0.0.1:9092/cam1?start-from=earliest&stop-at=end&timestamp-mode=original"
 * gst-discoverer-1.0 kafka://127.0.0.1:9092/cam1
 * ]|
 *
 * ## Messages
 * `kafka-statistics` (element message, when `statistics-interval-ms` > 0):
 * field `json` holds librdkafka's statistics document.
 */
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafka;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::engine::{self, Decision, Engine, Record, Skip, Timing};
use super::group::{self, Rebalances, SrcContext};
use super::reassembly::{self, Dropped};
use super::{StartFrom, StopAt, TimestampMode, TopicSource};
use crate::brokerwatch::{self, BrokerWatch, LibrdkafkaClient};
use crate::capturetime;
use crate::kafka::{self, ClientSettings, KafkaContext, TopicError, TopicInfo};
use crate::recordmeta::{self, RecordInfo};
use crate::runtime::{self, Cancelled, Canceller};
use crate::throttle::Throttle;
use crate::time::parse_time_ms;
use crate::uri;

const DEFAULT_START_FROM: StartFrom = StartFrom::Latest;
const DEFAULT_STOP_AT: StopAt = StopAt::Never;
const DEFAULT_PARTITION: i32 = -1;
const DEFAULT_CAPS: &str = "image/jpeg";
const DEFAULT_TIMESTAMP_MODE: TimestampMode = TimestampMode::Live;
const DEFAULT_MAX_LAG_MS: u32 = 0;
const DEFAULT_WAIT_FOR_TOPIC: bool = true;
const DEFAULT_MAX_PARTIAL_BYTES: u64 = reassembly::DEFAULT_MAX_PARTIAL_BYTES;
const DEFAULT_MAX_PARTIAL_AGE_MS: u64 = reassembly::DEFAULT_MAX_PARTIAL_AGE_MS;
/// How often a missing topic is looked up again, and after how long the
/// wait for it is reported on the bus.
const TOPIC_POLL_INTERVAL: Duration = Duration::from_millis(500);
const TOPIC_WAIT_WARNING: Duration = Duration::from_secs(5);
/// How long stop() waits for the final commit and the consumer's close.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// start-from=last looks this many records back at most for a keyframe
/// (a GOP of 10 s at 60 fps is 600).
const LAST_LOOKBACK: i64 = 4096;
/// What a `kafka://` URI sets unless its query says otherwise: players and
/// gst-discoverer-1.0 get a picture at once from the newest record instead
/// of waiting for the next one.
const URI_DEFAULTS: [(&str, &str); 1] = [("start-from", "last")];

#[derive(Debug, Clone)]
struct Settings {
    client: ClientSettings,
    topic: Option<String>,
    group_id: Option<String>,
    start_from: StartFrom,
    start_time: Option<String>,
    stop_at: StopAt,
    stop_time: Option<String>,
    key: Option<String>,
    partition: i32,
    caps: gst::Caps,
    timestamp_mode: TimestampMode,
    max_lag_ms: u32,
    wait_for_topic: bool,
    max_partial_bytes: u64,
    max_partial_age_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            client: ClientSettings::default(),
            topic: None,
            group_id: None,
            start_from: DEFAULT_START_FROM,
            start_time: None,
            stop_at: DEFAULT_STOP_AT,
            stop_time: None,
            key: None,
            partition: DEFAULT_PARTITION,
            caps: gst::Caps::from_str(DEFAULT_CAPS).expect("valid default caps"),
            timestamp_mode: DEFAULT_TIMESTAMP_MODE,
            max_lag_ms: DEFAULT_MAX_LAG_MS,
            wait_for_topic: DEFAULT_WAIT_FOR_TOPIC,
            max_partial_bytes: DEFAULT_MAX_PARTIAL_BYTES,
            max_partial_age_ms: DEFAULT_MAX_PARTIAL_AGE_MS,
        }
    }
}

type Kafka = StreamConsumer<SrcContext>;

// SAFETY: the consumer owns its handle.
unsafe impl LibrdkafkaClient for Kafka {
    fn librdkafka_client(&self) -> *mut RDKafka {
        self.client().native_ptr()
    }
}

/// The topic did not exist at start: since when it is waited for, and the
/// times opening it needs.
#[derive(Debug, Clone, Copy)]
struct TopicWait {
    since: Instant,
    start_time_ms: Option<i64>,
    stop_time_ms: Option<i64>,
}

struct Started {
    /// Declared first: stops before the client is let go.
    _broker_watch: Option<BrokerWatch>,
    consumer: Arc<Kafka>,
    settings: Settings,
    topic: String,
    engine: Engine,
    /// Record to commit once the buffer made from it has been pushed.
    pending_store: Option<PendingCommit>,
    /// Per partition, the streams pushed at or after the offset committed
    /// last (an unfinished chunked frame holds it back): the sequence
    /// number and offset of the last record pushed of each, which the
    /// commit metadata names.
    pushed: HashMap<i32, HashMap<String, (u64, i64)>>,
    pending_seek: Option<gst::ClockTime>,
    bad_record_warnings: Throttle,
    incomplete_frame_warnings: Throttle,
    /// The topic did not exist at start: what opening it later needs.
    waiting_for_topic: Option<TopicWait>,
}

/// Chunked frames dropped incomplete, to warn about: each with what the
/// warning throttle said, and how many warnings it held back.
struct IncompleteFrames {
    frames: Vec<(Dropped, Option<u64>)>,
    held_back: u64,
}

/// A pushed record to commit: its partition and offset.
struct PendingCommit {
    partition: i32,
    offset: i64,
}

#[derive(Default)]
enum State {
    #[default]
    Stopped,
    Started(Box<Started>),
}

#[derive(Default)]
pub struct KafkaSrc {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    canceller: Canceller,
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "kafkasrc",
        gst::DebugColorFlags::empty(),
        Some("Kafka record source"),
    )
});

impl KafkaSrc {
    fn settings_error(message: String) -> gst::ErrorMessage {
        gst::error_msg!(gst::LibraryError::Settings, ("{message}"))
    }

    fn parse_setting_time(name: &str, value: Option<&str>) -> Result<i64, gst::ErrorMessage> {
        let value = value.ok_or_else(|| Self::settings_error(format!("{name} is not set")))?;
        parse_time_ms(value).map_err(|err| Self::settings_error(format!("{name}: {err}")))
    }

    fn validate(settings: &Settings) -> Result<(), gst::ErrorMessage> {
        if settings.topic.is_none() {
            return Err(Self::settings_error("the topic property is not set".into()));
        }
        if settings.group_id.is_some() {
            let conflict = if settings.partition >= 0 {
                Some("partition")
            } else if settings.stop_at == StopAt::End {
                Some("stop-at=end")
            } else if settings.start_from == StartFrom::Timestamp {
                Some("start-from=timestamp")
            } else {
                None
            };
            if let Some(conflict) = conflict {
                return Err(Self::settings_error(format!(
                    "{conflict} cannot be combined with group-id: the group decides which partitions this element reads"
                )));
            }
        } else if settings.start_from == StartFrom::Committed {
            return Err(Self::settings_error(
                "start-from=committed needs a group-id whose offsets to resume".into(),
            ));
        }
        Ok(())
    }

    fn librdkafka_defaults(settings: &Settings) -> Vec<(&'static str, String)> {
        let mut defaults = vec![
            ("client.id", "gst-kafkasrc".to_string()),
            // Frames are large: fetch at least one whole record per request.
            ("fetch.max.bytes", "67108864".into()),
            (
                "max.partition.fetch.bytes",
                kafka::DEFAULT_MAX_MESSAGE_BYTES.to_string(),
            ),
            ("fetch.wait.max.ms", "10".into()),
            ("allow.auto.create.topics", "false".into()),
        ];
        match &settings.group_id {
            Some(group) => defaults.extend([
                ("group.id", group.clone()),
                // Committed by hand once a buffer was pushed, with its
                // sequence number (the auto-commit also covers what a
                // failed commit left behind).
                ("enable.auto.commit", "true".into()),
                ("enable.auto.offset.store", "false".into()),
                ("auto.commit.interval.ms", "1000".into()),
                (
                    "auto.offset.reset",
                    if settings.start_from == StartFrom::Earliest {
                        "earliest"
                    } else {
                        "latest"
                    }
                    .into(),
                ),
            ]),
            None => defaults.extend([
                // librdkafka wants a group id even for a plain assignment; it
                // is never used since nothing is committed.
                (
                    "group.id",
                    format!("gst-kafkasrc-{:016x}", kafka::random_u64()),
                ),
                ("enable.auto.commit", "false".into()),
                ("enable.auto.offset.store", "false".into()),
            ]),
        }
        defaults
    }

    /// Assigns partitions explicitly (no group): resolves the start offsets
    /// and, for stop-at=end, the end offsets.
    fn assign(
        &self,
        consumer: &Kafka,
        settings: &Settings,
        topic: &str,
        partitions: &[i32],
        start_time_ms: Option<i64>,
        created_after_start: bool,
    ) -> Result<HashMap<i32, i64>, gst::ErrorMessage> {
        let timeout = settings.client.connect_timeout();
        let mut starts = HashMap::new();
        let mut ends = HashMap::new();
        for &partition in partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(|err| {
                    gst::error_msg!(
                        gst::ResourceError::OpenRead,
                        ("cannot read the offsets of {topic}/{partition}: {err}")
                    )
                })?;
            // Every record of a topic created after start is new.
            let start = match settings.start_from {
                StartFrom::Earliest => low,
                _ if created_after_start => low,
                StartFrom::Last if high > low => {
                    self.newest_keyframe(consumer, topic, partition, low, high, timeout)?
                }
                _ => high,
            };
            starts.insert(partition, start);
            ends.insert(partition, high);
        }
        if let Some(time_ms) = start_time_ms {
            let mut query = TopicPartitionList::new();
            for &partition in partitions {
                query
                    .add_partition_offset(topic, partition, Offset::Offset(time_ms))
                    .map_err(|err| Self::settings_error(err.to_string()))?;
            }
            let found = consumer.offsets_for_times(query, timeout).map_err(|err| {
                gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    ("cannot look up offsets for time {time_ms} in {topic}: {err}")
                )
            })?;
            for element in found.elements() {
                // No record at or after the time: start at the end.
                if let Offset::Offset(offset) = element.offset() {
                    starts.insert(element.partition(), offset);
                }
            }
        }
        let mut list = TopicPartitionList::new();
        for (&partition, &start) in &starts {
            list.add_partition_offset(topic, partition, Offset::Offset(start))
                .map_err(|err| Self::settings_error(err.to_string()))?;
        }
        consumer.assign(&list).map_err(|err| {
            gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("cannot assign {topic}: {err}")
            )
        })?;
        gst::info!(
            CAT,
            imp = self,
            "assigned {topic} at {starts:?} (ends now {ends:?})"
        );
        // stop-at=end: partitions already at their end need nothing more.
        ends.retain(|partition, end| starts.get(partition).is_some_and(|start| start < end));
        Ok(ends)
    }

    /// start-from=last: the offset of the newest record in `low..high` that a
    /// decoder can start at (not a delta unit), looking back over
    /// LAST_LOOKBACK records at most, in growing steps; the newest record
    /// when there is none. Reads with `consumer`, which assign() then
    /// assigns again.
    fn newest_keyframe(
        &self,
        consumer: &Kafka,
        topic: &str,
        partition: i32,
        low: i64,
        high: i64,
        timeout: Duration,
    ) -> Result<i64, gst::ErrorMessage> {
        let read_error = |err: KafkaError| {
            gst::error_msg!(
                gst::ResourceError::Read,
                ("cannot read the newest records of {topic}/{partition}: {err}")
            )
        };
        let lowest = low.max(high.saturating_sub(LAST_LOOKBACK));
        let mut stop = high;
        let mut step = 1;
        while stop > lowest {
            let from = stop.saturating_sub(step).max(lowest);
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(topic, partition, Offset::Offset(from))
                .map_err(read_error)?;
            consumer.assign(&list).map_err(read_error)?;
            let mut keyframe = None;
            let mut next = from;
            while next < stop {
                let received = runtime::RUNTIME
                    .block_on(async { tokio::time::timeout(timeout, consumer.recv()).await });
                // Nothing more within the timeout: offsets missing at the
                // end of the range (transaction markers) have no record.
                let Ok(received) = received else { break };
                let message = received.map_err(read_error)?;
                if message.partition() != partition || message.offset() < from {
                    continue;
                }
                next = message.offset().saturating_add(1);
                if next <= stop
                    && kafka::record_meta(&message).is_some_and(|meta| meta.starts_keyframe())
                {
                    keyframe = Some(message.offset());
                }
            }
            if let Some(offset) = keyframe {
                gst::debug!(
                    CAT,
                    imp = self,
                    "newest keyframe of {topic}/{partition}: {offset}"
                );
                return Ok(offset);
            }
            stop = from;
            step *= 16;
        }
        gst::info!(
            CAT,
            imp = self,
            "no keyframe in the last {} records of {topic}/{partition}: starting at the newest",
            high - lowest
        );
        Ok(high - 1)
    }

    /// Runs a blocking librdkafka call on the runtime's blocking threads, so
    /// that no lock is held while it waits for the broker and `unlock()` can
    /// abandon it (the call itself then ends on its own timeout).
    fn broker_call<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<Result<T, KafkaError>, Cancelled> {
        let task = runtime::RUNTIME.spawn_blocking(call);
        Ok(runtime::wait(&self.canceller, task)?.unwrap_or(Err(KafkaError::Canceled)))
    }

    /// Subscribes (group) or assigns the partitions of an existing topic;
    /// returns the partitions read and, for stop-at=end, where they end.
    fn open_topic(
        &self,
        consumer: &Kafka,
        settings: &Settings,
        topic: &str,
        info: TopicInfo,
        start_time_ms: Option<i64>,
        created_after_start: bool,
    ) -> Result<(Vec<i32>, HashMap<i32, i64>), gst::ErrorMessage> {
        let partitions: Vec<i32> = if settings.partition >= 0 {
            if settings.partition as usize >= info.partitions {
                return Err(Self::settings_error(format!(
                    "partition {} does not exist: topic {topic} has {} partition(s)",
                    settings.partition, info.partitions
                )));
            }
            vec![settings.partition]
        } else {
            (0..info.partitions as i32).collect()
        };
        if settings.group_id.is_some() {
            consumer.subscribe(&[topic]).map_err(|err| {
                gst::error_msg!(
                    gst::ResourceError::OpenRead,
                    ("cannot subscribe to {topic}: {err}")
                )
            })?;
            return Ok((partitions, HashMap::new()));
        }
        let ends = self.assign(
            consumer,
            settings,
            topic,
            &partitions,
            start_time_ms,
            created_after_start,
        )?;
        let ends = if settings.stop_at == StopAt::End {
            ends
        } else {
            HashMap::new()
        };
        Ok((partitions, ends))
    }

    /// Started before its topic existed: looks the topic up again every
    /// TOPIC_POLL_INTERVAL until it exists, then opens it. Returns at once
    /// when the topic is open; cancelled by unlock().
    fn await_topic(&self) -> Result<(), gst::FlowError> {
        let mut warned = false;
        loop {
            let (consumer, settings, topic, wait) = {
                let state = self.lock_state();
                let State::Started(started) = &*state else {
                    return Err(gst::FlowError::Flushing);
                };
                let Some(wait) = started.waiting_for_topic else {
                    return Ok(());
                };
                (
                    started.consumer.clone(),
                    started.settings.clone(),
                    started.topic.clone(),
                    wait,
                )
            };
            // A metadata request blocks for up to connect-timeout-ms: off
            // the state lock, and abandoned when the element is stopped.
            let timeout = settings.client.connect_timeout();
            let lookup = {
                let consumer = consumer.clone();
                let topic = topic.clone();
                runtime::RUNTIME.spawn_blocking(move || {
                    kafka::describe_topic(consumer.client(), &topic, timeout)
                })
            };
            let described = runtime::wait(&self.canceller, lookup)
                .map_err(|_| gst::FlowError::Flushing)?
                .map_err(|err| {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Failed,
                        ("looking up topic {topic} failed: {err}")
                    );
                    gst::FlowError::Error
                })?;
            match described {
                Ok(info) => {
                    gst::debug!(CAT, imp = self, "topic {topic} exists now: opening it");
                    let partition_count = info.partitions;
                    // Reading the partitions' offsets waits for their
                    // leaders, up to connect-timeout-ms when one is frozen
                    // or gone: off this thread too, so that a stop does not
                    // wait for it.
                    let opening = {
                        let (obj, consumer) = (self.obj().clone(), consumer.clone());
                        let (settings, topic) = (settings.clone(), topic.clone());
                        runtime::RUNTIME.spawn_blocking(move || {
                            obj.imp().open_topic(
                                &consumer,
                                &settings,
                                &topic,
                                info,
                                wait.start_time_ms,
                                true,
                            )
                        })
                    };
                    let (partitions, end_offsets) = runtime::wait(&self.canceller, opening)
                        .map_err(|_| gst::FlowError::Flushing)?
                        .map_err(|err| {
                            gst::element_imp_error!(
                                self,
                                gst::ResourceError::Failed,
                                ("opening topic {topic} failed: {err}")
                            );
                            gst::FlowError::Error
                        })?
                        .map_err(|err| {
                            self.post_error_message(err);
                            gst::FlowError::Error
                        })?;
                    gst::info!(
                        CAT,
                        imp = self,
                        "topic {topic} exists now ({partition_count} partition(s)) after {:?}",
                        wait.since.elapsed()
                    );
                    // Nothing was read yet: the engine starts over with
                    // the topic's partitions.
                    return self.with_started(|started| {
                        started.engine = record_engine(
                            &started.settings,
                            wait.stop_time_ms,
                            partitions,
                            end_offsets,
                        );
                        started.waiting_for_topic = None;
                    });
                }
                Err(TopicError::Missing) => (),
                // The broker away for a moment: librdkafka reconnects.
                Err(err) => gst::debug!(CAT, imp = self, "looking up {topic}: {err:?}"),
            }
            if !warned && wait.since.elapsed() >= TOPIC_WAIT_WARNING {
                warned = true;
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::NotFound,
                    (
                        "topic {topic} does not exist at {}: waiting for it to be created (wait-for-topic=false fails instead)",
                        settings.client.bootstrap_servers
                    )
                );
            }
            runtime::wait(&self.canceller, async {
                tokio::time::sleep(TOPIC_POLL_INTERVAL).await
            })
            .map_err(|_| gst::FlowError::Flushing)?;
        }
    }

    pub(super) fn topic_source(&self) -> TopicSource {
        let settings = self.lock_settings().clone();
        let negotiated = self
            .obj()
            .static_pad("src")
            .and_then(|pad| pad.current_caps());
        TopicSource {
            client: settings.client,
            topic: settings.topic,
            key: settings.key,
            partition: (settings.partition >= 0).then_some(settings.partition),
            caps: negotiated.unwrap_or(settings.caps),
        }
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not turn every later stats read into one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the started state, or says the element is flushing.
    fn with_started<R>(&self, f: impl FnOnce(&mut Started) -> R) -> Result<R, gst::FlowError> {
        match &mut *self.lock_state() {
            State::Started(started) => Ok(f(started)),
            State::Stopped => Err(gst::FlowError::Flushing),
        }
    }

    fn running_time_now(&self) -> Option<gst::ClockTime> {
        let obj = self.obj();
        let clock = obj.clock()?;
        let base_time = obj.base_time()?;
        clock.time().checked_sub(base_time)
    }

    /// Posts a bad-record warning if the throttle lets it through.
    fn warn_bad_record(
        &self,
        message: &BorrowedMessage,
        why: &engine::BadRecord,
        admitted: Option<u64>,
    ) {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        gst::debug!(
            CAT,
            imp = self,
            "skipped record {topic}/{partition} offset {offset}: {why}"
        );
        let Some(suppressed) = admitted else {
            return;
        };
        let since = if suppressed > 0 {
            format!(" ({suppressed} more bad record(s) skipped since the last warning)")
        } else {
            String::new()
        };
        gst::element_imp_warning!(
            self,
            gst::StreamError::Decode,
            ("skipped record {topic}/{partition} offset {offset}: {why}{since}")
        );
    }

    /// Warns about chunked frames dropped incomplete, as the throttle lets
    /// through, and at EOS about those whose warnings were held back.
    fn warn_incomplete(&self, report: IncompleteFrames) {
        for (frame, admitted) in report.frames {
            gst::debug!(CAT, imp = self, "{frame}");
            let Some(suppressed) = admitted else {
                continue;
            };
            let since = if suppressed > 0 {
                format!(" ({suppressed} more incomplete frame(s) dropped since the last warning)")
            } else {
                String::new()
            };
            gst::element_imp_warning!(
                self,
                gst::StreamError::Decode,
                ("incomplete chunked {frame}{since}")
            );
        }
        if report.held_back > 0 {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Decode,
                (
                    "{} more incomplete chunked frame(s) dropped since the last warning",
                    report.held_back
                )
            );
        }
    }

    /// At EOS: reports the bad records whose warnings were held back.
    fn warn_suppressed(&self, suppressed: u64) {
        if suppressed > 0 {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Decode,
                ("{suppressed} more bad record(s) skipped since the last warning")
            );
        }
    }

    /// Builds the buffer of a record the engine decided to push.
    fn buffer(&self, message: &BorrowedMessage, push: engine::Push) -> gst::Buffer {
        if let Some(caps) = &push.caps {
            let (partition, offset) = (message.partition(), message.offset());
            gst::debug!(CAT, imp = self, "caps from {partition}/{offset}: {caps}");
            if self.obj().set_caps(caps).is_err() {
                gst::element_imp_warning!(
                    self,
                    gst::CoreError::Negotiation,
                    ("downstream refused caps {caps} of record {partition}/{offset}")
                );
            }
        }
        let bytes = match push.frame {
            Some(frame) => frame,
            None => message.payload().unwrap_or_default().to_vec(),
        };
        let mut buffer = gst::Buffer::from_mut_slice(bytes);
        {
            let buffer = buffer.get_mut().expect("new buffer is writable");
            match push.timing {
                Timing::Live => buffer.set_pts(self.running_time_now()),
                Timing::Original { pts, dts } => {
                    buffer.set_pts(pts);
                    buffer.set_dts(dts);
                }
            }
            buffer.set_duration(push.duration);
            buffer.set_offset(push.offset);
            // The capture time travels on with the buffer (mjpeghttpsink
            // sends it as X-Timestamp; a kafkasink downstream keeps it).
            if let Some(since_epoch) = push.capture_time {
                capturetime::set_capture_time(buffer, since_epoch);
            }
            recordmeta::add(
                buffer,
                &RecordInfo {
                    key: message.key().and_then(|key| std::str::from_utf8(key).ok()),
                    stream_id: push.stream_id.as_deref(),
                    partition: message.partition(),
                    // A frame put together from chunks starts at its
                    // first chunk's offset.
                    offset: i64::try_from(push.offset).unwrap_or(message.offset()),
                    timestamp_ms: message.timestamp().to_millis(),
                },
            );
            buffer.set_flags(push.flags);
        }
        buffer
    }

    /// max-lag-ms: jumps to the newest records when `message` is too old and
    /// newer ones wait behind it. Returns how many records were skipped.
    fn catch_up(
        &self,
        consumer: &Arc<Kafka>,
        reader: Reader,
        message: &BorrowedMessage,
    ) -> Result<u64, Cancelled> {
        let (partition, offset) = (message.partition(), message.offset());
        let watermarks = {
            let (consumer, reader) = (consumer.clone(), reader.clone());
            self.broker_call(move || {
                consumer.fetch_watermarks(&reader.topic, partition, reader.timeout)
            })?
        };
        let Ok((_, high)) = watermarks else {
            return Ok(0);
        };
        let behind = high.saturating_sub(offset).saturating_sub(1);
        if behind <= 0 {
            return Ok(0);
        }
        let consumer = consumer.clone();
        match self.broker_call(move || reposition(&consumer, &reader, None))? {
            Ok(()) => Ok(u64::try_from(behind).unwrap_or(u64::MAX).saturating_add(1)),
            Err(err) => {
                gst::warning!(CAT, imp = self, "cannot catch up: {err}");
                Ok(0)
            }
        }
    }

    fn next_buffer(&self) -> Result<gst::Buffer, gst::FlowError> {
        self.await_topic()?;
        loop {
            let (consumer, seek) = self
                .with_started(|started| {
                    // The previous buffer has been pushed: its record is
                    // committed now, so that a successor does not push it
                    // again (asynchronous: nothing waits for the broker).
                    if let Some(pending) = started.pending_store.take()
                        && let Err(err) = started.commit(pending, CommitMode::Async)
                    {
                        gst::debug!(CAT, imp = self, "cannot commit: {err}");
                    }
                    let seek = started
                        .pending_seek
                        .take()
                        .and_then(|position| started.engine.seek_target_ms(position))
                        .map(|wall_ms| (wall_ms, started.reader()));
                    if seek.is_none() && started.engine.at_eos() {
                        started.engine.finish();
                        return Err((
                            started.bad_record_warnings.take_held_back(),
                            started.take_incomplete(true),
                        ));
                    }
                    Ok((started.consumer.clone(), seek))
                })?
                .map_err(|(suppressed, incomplete)| {
                    self.warn_incomplete(incomplete);
                    self.warn_suppressed(suppressed);
                    gst::FlowError::Eos
                })?;
            if let Some((wall_ms, reader)) = seek {
                let repositioned = {
                    let consumer = consumer.clone();
                    self.broker_call(move || reposition(&consumer, &reader, Some(wall_ms)))
                        .map_err(|Cancelled| gst::FlowError::Flushing)?
                };
                if let Err(err) = repositioned {
                    gst::element_imp_error!(self, gst::ResourceError::Seek, ("seek failed: {err}"));
                    return Err(gst::FlowError::Error);
                }
                self.with_started(Started::repositioned)?;
                continue;
            }
            let received = runtime::wait(&self.canceller, consumer.recv())
                .map_err(|_| gst::FlowError::Flushing)?;
            let message = match received {
                Ok(message) => message,
                Err(err) => {
                    consumer.context().error(err, "while reading records");
                    continue;
                }
            };
            if consumer.context().extra.take_assigned() {
                self.seed_from_commits(&consumer)?;
            }
            let timestamp_ms = message.timestamp().to_millis();
            let lagging = self.with_started(|started| {
                engine::lags(
                    timestamp_ms,
                    capturetime::unix_now_ms(),
                    started.settings.max_lag_ms,
                )
                .then(|| started.reader())
            })?;
            if let Some(reader) = lagging {
                let skipped = self
                    .catch_up(&consumer, reader, &message)
                    .map_err(|Cancelled| gst::FlowError::Flushing)?;
                if skipped > 0 {
                    self.with_started(|started| {
                        started.repositioned();
                        started.engine.count_skipped_lag(skipped);
                    })?;
                    gst::info!(
                        CAT,
                        imp = self,
                        "{} ms behind: skipped {skipped} record(s) to catch up",
                        capturetime::unix_now_ms().saturating_sub(timestamp_ms.unwrap_or_default())
                    );
                    continue;
                }
            }
            let (decision, admitted, incomplete) = self.with_started(|started| {
                let headers = message.headers();
                let record = Record {
                    partition: message.partition(),
                    offset: message.offset(),
                    timestamp_ms,
                    key: message.key(),
                    payload: message.payload().unwrap_or_default(),
                    headers: headers
                        .iter()
                        .flat_map(|headers| headers.iter())
                        .map(|header| (header.key, header.value)),
                };
                let decision = started.engine.process(record, capturetime::unix_now_ms());
                let admitted = match &decision {
                    Decision::Push(_) => {
                        if started.settings.group_id.is_some() {
                            started.record_pushed(&message);
                        }
                        None
                    }
                    Decision::Skip(Skip::Bad(_)) => started.bad_record_warnings.allow(),
                    Decision::Skip(_) => None,
                    Decision::Eos => {
                        started.engine.finish();
                        Some(started.bad_record_warnings.take_held_back())
                    }
                };
                let at_eos = matches!(decision, Decision::Eos);
                (decision, admitted, started.take_incomplete(at_eos))
            })?;
            self.warn_incomplete(incomplete);
            match decision {
                Decision::Push(push) => return Ok(self.buffer(&message, push)),
                Decision::Skip(Skip::Bad(why)) => self.warn_bad_record(&message, &why, admitted),
                Decision::Skip(_) => (),
                Decision::Eos => {
                    self.warn_suppressed(admitted.unwrap_or_default());
                    return Err(gst::FlowError::Eos);
                }
            }
        }
    }

    /// Partitions were assigned: the streams and sequence numbers their
    /// previous owners pushed last (commit metadata) are what the engine
    /// takes as already pushed.
    fn seed_from_commits(&self, consumer: &Arc<Kafka>) -> Result<(), gst::FlowError> {
        let timeout = self.lock_settings().client.connect_timeout();
        let committed = {
            let consumer = consumer.clone();
            self.broker_call(move || consumer.committed(timeout))
                .map_err(|Cancelled| gst::FlowError::Flushing)?
        };
        let streams = match committed {
            Ok(committed) => group::committed_streams(&committed),
            Err(err) => {
                gst::warning!(
                    CAT,
                    imp = self,
                    "cannot read the committed offsets of the new assignment: {err}"
                );
                return Ok(());
            }
        };
        self.with_started(|started| {
            for (stream_id, seq) in &streams {
                gst::info!(
                    CAT,
                    imp = self,
                    "stream {stream_id}: pushed up to sequence number {seq} before this assignment"
                );
                started.engine.seed_stream(stream_id, *seq);
            }
        })
    }

    fn stats(&self) -> gst::Structure {
        let (counters, assigned, lag, waiting) = match &*self.lock_state() {
            State::Started(started) => (
                started.engine.counters().clone(),
                started
                    .consumer
                    .assignment()
                    .map(|a| a.count() as u32)
                    .unwrap_or(0),
                consumer_lag(&started.consumer, &started.topic, started.engine.counters()),
                started.waiting_for_topic.is_some(),
            ),
            State::Stopped => (engine::Counters::default(), 0, 0, false),
        };
        gst::Structure::builder("kafkasrc-stats")
            .field("waiting-for-topic", waiting)
            .field("consumer-lag", lag)
            .field("assigned-partitions", assigned)
            .field("records-received", counters.records_received)
            .field("bytes-received", counters.bytes_received)
            .field("buffers-pushed", counters.buffers_pushed)
            .field("skipped-to-keyframe", counters.skipped_to_keyframe)
            .field("skipped-lag", counters.skipped_lag)
            .field("filtered-key", counters.filtered_key)
            .field("sequence-gaps", counters.sequence_gaps)
            .field("lost-records", counters.lost_records)
            .field("duplicates", counters.duplicates)
            .field("stream-restarts", counters.stream_restarts)
            .field("bad-records", counters.bad_records)
            .field("frames-reassembled", counters.frames_reassembled)
            .field("incomplete-frames", counters.incomplete_frames)
            .field("chunks-skipped", counters.chunks_skipped)
            .field("frames-cut-at-end", counters.frames_cut_at_end)
            .field("partial-bytes", counters.partial_bytes)
            .field("latency-last-ms", counters.latency_last_ms)
            .field("latency-max-ms", counters.latency_max_ms)
            .field("last-partition", counters.last_partition)
            .field("last-offset", counters.last_offset)
            .build()
    }
}

/// What a repositioning needs, taken out of the state so that no lock is
/// held while the broker answers.
#[derive(Clone)]
struct Reader {
    topic: String,
    grouped: bool,
    timeout: Duration,
}

impl Started {
    fn reader(&self) -> Reader {
        Reader {
            topic: self.topic.clone(),
            grouped: self.settings.group_id.is_some(),
            timeout: self.settings.client.connect_timeout(),
        }
    }

    /// Remembers `message` as pushed: committed at the next `create()`,
    /// named in commit metadata while the committed offset is not past it.
    fn record_pushed(&mut self, message: &BorrowedMessage) {
        let (partition, offset) = (message.partition(), message.offset());
        self.pending_store = Some(PendingCommit { partition, offset });
        let Some((stream_id, seq)) = pushed_stream(message) else {
            return;
        };
        let streams = self.pushed.entry(partition).or_default();
        if !streams.contains_key(stream_id)
            && streams.len() >= engine::MAX_TRACKS
            && let Some(oldest) = streams
                .iter()
                .min_by_key(|(_, (_, offset))| *offset)
                .map(|(id, _)| id.clone())
        {
            streams.remove(&oldest);
        }
        match streams.get_mut(stream_id) {
            Some(last) => *last = (seq, offset),
            None => {
                streams.insert(stream_id.to_string(), (seq, offset));
            }
        }
    }

    /// Commits `pending` (storing it first, so that the auto-commit and a
    /// commit at stop carry it too), with metadata naming its stream and
    /// every other stream pushed at or after the committed offset.
    fn commit(&mut self, pending: PendingCommit, mode: CommitMode) -> Result<(), KafkaError> {
        // Never past the first chunk of a frame still being put together:
        // a successor starting there would miss part of it.
        let mut next = pending.offset.saturating_add(1);
        if let Some(unfinished) = self.engine.oldest_unfinished(pending.partition) {
            next = next.min(unfinished);
        }
        // A successor reads again from `next`: what was pushed from there on
        // is named so that it is not pushed twice; what is before it never
        // will be read again.
        let metadata = self.pushed.get_mut(&pending.partition).and_then(|streams| {
            streams.retain(|_, (_, offset)| *offset >= next || *offset == pending.offset);
            let mut named: Vec<(&str, u64, i64)> = streams
                .iter()
                .map(|(stream_id, (seq, offset))| (stream_id.as_str(), *seq, *offset))
                .collect();
            named.sort_unstable_by_key(|(_, _, offset)| std::cmp::Reverse(*offset));
            group::metadata(
                named
                    .into_iter()
                    .map(|(stream_id, seq, _)| (stream_id, seq)),
            )
        });
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, pending.partition, Offset::Offset(next))?;
        if let Some(metadata) = &metadata {
            for mut element in list.elements() {
                element.set_metadata(metadata);
            }
        }
        self.consumer.store_offsets(&list)?;
        self.consumer.commit(&list, mode)
    }

    /// Chunked frames dropped incomplete since the last call, each with
    /// what the warning throttle says; at EOS, also how many warnings it
    /// held back.
    fn take_incomplete(&mut self, at_eos: bool) -> IncompleteFrames {
        let frames = self
            .engine
            .take_dropped()
            .into_iter()
            .map(|frame| (frame, self.incomplete_frame_warnings.allow()))
            .collect();
        let held_back = if at_eos {
            self.incomplete_frame_warnings.take_held_back()
        } else {
            0
        };
        IncompleteFrames { frames, held_back }
    }

    /// After a seek or catch-up: nothing read before it is to be committed.
    fn repositioned(&mut self) {
        self.engine.repositioned();
        self.pending_store = None;
        self.pushed.clear();
    }
}

/// The stream id and sequence number of a pushed record, when it has both.
fn pushed_stream<'a>(message: &'a BorrowedMessage) -> Option<(&'a str, u64)> {
    let meta = kafka::record_meta(message)?;
    Some((meta.stream_id?, meta.seq?))
}

/// The record engine for these settings and the partitions being read.
fn record_engine(
    settings: &Settings,
    stop_time_ms: Option<i64>,
    partitions: Vec<i32>,
    end_offsets: HashMap<i32, i64>,
) -> Engine {
    Engine::new(
        engine::Config {
            key: settings.key.clone(),
            default_caps: settings.caps.clone(),
            original_timestamps: settings.timestamp_mode == TimestampMode::Original,
            stop_at_end: settings.stop_at == StopAt::End,
            stop_time_ms,
            partitions,
            max_partial_bytes: settings.max_partial_bytes,
            max_partial_age_ms: settings.max_partial_age_ms,
        },
        end_offsets,
    )
}

/// Repositions every assigned partition at the first record at or after
/// `wall_ms` (or at the end when there is none). Blocks on the broker: runs
/// through `broker_call`.
fn reposition(consumer: &Kafka, reader: &Reader, wall_ms: Option<i64>) -> Result<(), KafkaError> {
    let topic = &reader.topic;
    let assignment = consumer.assignment()?;
    let mut query = TopicPartitionList::new();
    for element in assignment.elements() {
        let offset = wall_ms.map(Offset::Offset).unwrap_or(Offset::End);
        query.add_partition_offset(topic, element.partition(), offset)?;
    }
    let mut target = match wall_ms {
        Some(_) => consumer.offsets_for_times(query, reader.timeout)?,
        None => query,
    };
    // Numeric offsets: no record at or after the time means the end.
    let unresolved: Vec<i32> = target
        .elements()
        .iter()
        .filter(|e| !matches!(e.offset(), Offset::Offset(_)))
        .map(|e| e.partition())
        .collect();
    for partition in unresolved {
        let (_, high) = consumer.fetch_watermarks(topic, partition, reader.timeout)?;
        target.set_partition_offset(topic, partition, Offset::Offset(high))?;
    }
    if reader.grouped {
        consumer.seek_partitions(target, reader.timeout)?;
    } else {
        consumer.assign(&target)?;
    }
    Ok(())
}

/// Records behind the newest one in the partition of the last record read,
/// from the high watermark librdkafka last fetched (no broker round trip).
fn consumer_lag(consumer: &Kafka, topic: &str, counters: &engine::Counters) -> i64 {
    if counters.records_received == 0 {
        return 0;
    }
    let Ok(topic) = std::ffi::CString::new(topic) else {
        return 0;
    };
    let (mut low, mut high) = (0i64, 0i64);
    // SAFETY: a valid client handle and NUL-terminated topic; the call only
    // reads librdkafka's cached offsets into the two integers.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            counters.last_partition,
            &mut low,
            &mut high,
        )
    };
    if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || high < 0 {
        return 0;
    }
    high.saturating_sub(counters.last_offset)
        .saturating_sub(1)
        .max(0)
}

#[glib::object_subclass]
impl ObjectSubclass for KafkaSrc {
    const NAME: &'static str = "GstKafkaSrc";
    type Type = super::KafkaSrc;
    type ParentType = gst_base::PushSrc;
    type Interfaces = (gst::URIHandler,);
}

impl ObjectImpl for KafkaSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut properties = kafka::client_properties();
            properties.extend([
                glib::ParamSpecString::builder("topic")
                    .nick("Topic")
                    .blurb("Kafka topic to consume (required)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("group-id")
                    .nick("Group id")
                    .blurb("Consumer group to join: partitions are shared between members and offsets committed (unset: a private position, nothing committed)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("start-from", DEFAULT_START_FROM)
                    .nick("Start from")
                    .blurb("Where consumption starts (with group-id, committed offsets win over earliest/latest)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("start-time")
                    .nick("Start time")
                    .blurb("With start-from=timestamp: ms since the Unix epoch or an ISO 8601 date-time (2026-11-25T13:00:00Z)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("stop-at", DEFAULT_STOP_AT)
                    .nick("Stop at")
                    .blurb("When to send EOS")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("stop-time")
                    .nick("Stop time")
                    .blurb("With stop-at=timestamp: ms since the Unix epoch or an ISO 8601 date-time")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("key")
                    .nick("Key")
                    .blurb("Only records with this key (one camera of a shared topic)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("partition")
                    .nick("Partition")
                    .blurb("Only this partition (-1: all partitions)")
                    .minimum(-1)
                    .default_value(DEFAULT_PARTITION)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Caps>("caps")
                    .nick("Caps")
                    .blurb("Caps of records that carry none (plain producers)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("timestamp-mode", DEFAULT_TIMESTAMP_MODE)
                    .nick("Timestamp mode")
                    .blurb("How buffers are timestamped")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-lag-ms")
                    .nick("Maximum lag")
                    .blurb("Jump to the newest records when the record read is older than this many ms (0: never)")
                    .default_value(DEFAULT_MAX_LAG_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("wait-for-topic")
                    .nick("Wait for topic")
                    .blurb("Started before the topic exists, wait for it to be created (a warning after 5 s); false: a missing topic is an error at start")
                    .default_value(DEFAULT_WAIT_FOR_TOPIC)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-partial-bytes")
                    .nick("Max partial bytes")
                    .blurb("Bytes held at most for chunked frames whose chunks have not all arrived (frames over the Kafka record limit); past it the oldest is dropped with a warning, and a larger frame is never put together")
                    .maximum(reassembly::MAX_MAX_PARTIAL_BYTES)
                    .default_value(DEFAULT_MAX_PARTIAL_BYTES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-partial-age-ms")
                    .nick("Max partial age")
                    .blurb("A chunked frame still missing chunks is dropped as incomplete (with a warning, releasing its memory and the commit it holds back) once its partition carries records stamped this many ms after it started; keep it above the writers' message-timeout-ms (kafkasink's default is 300000), or frames still being retried are dropped")
                    .minimum(1000)
                    .maximum(u64::from(u32::MAX))
                    .default_value(DEFAULT_MAX_PARTIAL_AGE_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("uri")
                    .nick("URI")
                    .blurb("kafka://host:port[,host:port…]/topic?property=value&…: sets bootstrap-servers, topic and the properties named in the query (start-from=last unless given); reads back the current settings, secrets left out")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Waiting for the topic, assigned partitions, consumer lag (records behind in the current partition), records and bytes received, skipped to keyframe or by lag, sequence gaps, duplicates, stream restarts (sequence jumps too large to be gaps), bad records, chunked frames reassembled and dropped incomplete, chunks skipped after joining mid-frame, chunked frames cut by the end of the range read (stop-at), bytes held for unfinished frames, latency from record timestamp to push")
                    .read_only()
                    .build(),
            ]);
            properties
        });
        PROPERTIES.as_ref()
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_live(true);
        obj.set_format(gst::Format::Time);
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        // Sets the other properties: before taking the settings lock.
        if pspec.name() == "uri" {
            uri::set_property(self.obj().upcast_ref(), *CAT, value, &URI_DEFAULTS);
            return;
        }
        let mut settings = self.lock_settings();
        if kafka::set_client_property(&mut settings.client, value, pspec) {
            return;
        }
        match pspec.name() {
            "topic" => settings.topic = value.get().expect("type checked upstream"),
            "group-id" => settings.group_id = value.get().expect("type checked upstream"),
            "start-from" => settings.start_from = value.get().expect("type checked upstream"),
            "start-time" => settings.start_time = value.get().expect("type checked upstream"),
            "stop-at" => settings.stop_at = value.get().expect("type checked upstream"),
            "stop-time" => settings.stop_time = value.get().expect("type checked upstream"),
            "key" => settings.key = value.get().expect("type checked upstream"),
            "partition" => settings.partition = value.get().expect("type checked upstream"),
            "caps" => {
                settings.caps = value
                    .get::<Option<gst::Caps>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| {
                        gst::Caps::from_str(DEFAULT_CAPS).expect("valid default caps")
                    })
            }
            "timestamp-mode" => {
                settings.timestamp_mode = value.get().expect("type checked upstream");
                // Replay at the recorded pace is not live; a live view is.
                let live = settings.timestamp_mode == TimestampMode::Live;
                drop(settings);
                self.obj().set_live(live);
            }
            "max-lag-ms" => settings.max_lag_ms = value.get().expect("type checked upstream"),
            "wait-for-topic" => {
                settings.wait_for_topic = value.get().expect("type checked upstream")
            }
            "max-partial-bytes" => {
                settings.max_partial_bytes = value.get().expect("type checked upstream")
            }
            "max-partial-age-ms" => {
                settings.max_partial_age_ms = value.get().expect("type checked upstream")
            }
            name => unimplemented!("property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "stats" {
            return self.stats().to_value();
        }
        if pspec.name() == "uri" {
            return self.uri().to_value();
        }
        let settings = self.lock_settings();
        if let Some(value) = kafka::client_property(&settings.client, pspec) {
            return value;
        }
        match pspec.name() {
            "topic" => settings.topic.to_value(),
            "group-id" => settings.group_id.to_value(),
            "start-from" => settings.start_from.to_value(),
            "start-time" => settings.start_time.to_value(),
            "stop-at" => settings.stop_at.to_value(),
            "stop-time" => settings.stop_time.to_value(),
            "key" => settings.key.to_value(),
            "partition" => settings.partition.to_value(),
            "caps" => settings.caps.to_value(),
            "timestamp-mode" => settings.timestamp_mode.to_value(),
            "max-lag-ms" => settings.max_lag_ms.to_value(),
            "wait-for-topic" => settings.wait_for_topic.to_value(),
            "max-partial-bytes" => settings.max_partial_bytes.to_value(),
            "max-partial-age-ms" => settings.max_partial_age_ms.to_value(),
            name => unimplemented!("property {name}"),
        }
    }
}

impl GstObjectImpl for KafkaSrc {}

impl ElementImpl for KafkaSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Kafka Source",
                "Source/Network",
                "Consumes an Apache Kafka topic, one buffer per record, rebuilding caps and timing from record headers",
                "gst-kafka developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .expect("valid pad template"),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl URIHandlerImpl for KafkaSrc {
    const URI_TYPE: gst::URIType = gst::URIType::Src;

    fn protocols() -> &'static [&'static str] {
        &[uri::SCHEME]
    }

    fn uri(&self) -> Option<String> {
        uri::current(self.obj().upcast_ref(), &URI_DEFAULTS)
    }

    fn set_uri(&self, text: &str) -> Result<(), glib::Error> {
        uri::apply(self.obj().upcast_ref(), text, &URI_DEFAULTS)
    }
}

impl BaseSrcImpl for KafkaSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.lock_settings().clone();
        Self::validate(&settings)?;
        let topic = settings.topic.clone().unwrap_or_default();
        let start_time_ms = match settings.start_from {
            StartFrom::Timestamp => Some(Self::parse_setting_time(
                "start-time",
                settings.start_time.as_deref(),
            )?),
            _ => None,
        };
        let stop_time_ms = match settings.stop_at {
            StopAt::Timestamp => Some(Self::parse_setting_time(
                "stop-time",
                settings.stop_time.as_deref(),
            )?),
            _ => None,
        };
        let config = settings
            .client
            .client_config(&Self::librdkafka_defaults(&settings))?;
        let element = self.obj().upcast_ref::<gst::Element>().clone();
        let context = KafkaContext::with(&element, Rebalances::default());
        // The stream consumer wakes its futures through the runtime.
        let consumer: Kafka = {
            let _guard = runtime::RUNTIME.enter();
            config
                .create_with_context(context)
                .map_err(kafka::config_error)?
        };
        let timeout = settings.client.connect_timeout();
        let described = kafka::describe_topic(consumer.client(), &topic, timeout);
        let waiting_for_topic = match described {
            Err(TopicError::Missing) if settings.wait_for_topic => {
                gst::info!(CAT, imp = self, "topic {topic} does not exist yet: waiting");
                Some(TopicWait {
                    since: Instant::now(),
                    start_time_ms,
                    stop_time_ms,
                })
            }
            Err(err) => {
                // librdkafka queues its logs and errors for the consumer's
                // poll: serve them, so that the reason a connection failed
                // is known.
                let _ = runtime::RUNTIME.block_on(async {
                    tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
                });
                let detail = consumer.context().last_error();
                return Err(kafka::topic_error(
                    &settings.client.bootstrap_servers,
                    &topic,
                    err,
                    detail,
                ));
            }
            Ok(_) => None,
        };
        let (partitions, end_offsets) = match described {
            Ok(info) => {
                self.open_topic(&consumer, &settings, &topic, info, start_time_ms, false)?
            }
            Err(_) => (Vec::new(), HashMap::new()),
        };
        gst::info!(
            CAT,
            imp = self,
            "consuming {topic} at {}",
            settings.client.bootstrap_servers
        );
        let consumer = Arc::new(consumer);
        let broker_watch = brokerwatch::watch(&element, &consumer, &config);
        *self.lock_state() = State::Started(Box::new(Started {
            consumer,
            _broker_watch: broker_watch,
            engine: record_engine(&settings, stop_time_ms, partitions, end_offsets),
            settings,
            topic,
            pending_store: None,
            pushed: HashMap::new(),
            pending_seek: None,
            bad_record_warnings: Throttle::default(),
            incomplete_frame_warnings: Throttle::default(),
            waiting_for_topic,
        }));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let State::Started(started) = std::mem::take(&mut *self.lock_state()) else {
            return Ok(());
        };
        gst::info!(
            CAT,
            imp = self,
            "stopped after {} buffers",
            started.engine.counters().buffers_pushed
        );
        let group = started.settings.group_id.is_some();
        // The final commit and closing the consumer (leaving the group) wait
        // for the broker: off this thread, so that NULL returns in bounded
        // time whatever the network does; a commit still under way then
        // finishes in the background.
        let close = runtime::RUNTIME.spawn_blocking(move || {
            let mut started = started;
            if group {
                // Commit what was pushed so that a restart resumes right after it.
                let result = match started.pending_store.take() {
                    Some(pending) => started.commit(pending, CommitMode::Sync),
                    None => started.consumer.commit_consumer_state(CommitMode::Sync),
                };
                if let Err(err) = result {
                    gst::debug!(CAT, "final commit: {err}");
                }
            }
        });
        let closed =
            runtime::RUNTIME.block_on(async { tokio::time::timeout(STOP_TIMEOUT, close).await });
        if closed.is_err() {
            gst::warning!(
                CAT,
                imp = self,
                "the final commit did not finish within {STOP_TIMEOUT:?}: left to finish in the background"
            );
        }
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        self.lock_settings().timestamp_mode == TimestampMode::Original
    }

    fn do_seek(&self, segment: &mut gst::Segment) -> bool {
        let Some(segment) = segment.downcast_ref::<gst::ClockTime>() else {
            return false;
        };
        let mut state = self.lock_state();
        let State::Started(started) = &mut *state else {
            return true;
        };
        // The initial seek to 0 before anything was read is where we are.
        if started.engine.is_anchored()
            && let Some(position) = segment.start()
        {
            gst::debug!(CAT, imp = self, "seek to {position}");
            started.pending_seek = Some(position);
        }
        true
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        // Live mode stamps buffers with the running time they are pushed at.
        if let gst::QueryViewMut::Latency(q) = query.view_mut()
            && self.obj().is_live()
        {
            q.set(true, gst::ClockTime::ZERO, gst::ClockTime::NONE);
            return true;
        }
        BaseSrcImplExt::parent_query(self, query)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.canceller.cancel();
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.canceller.reset();
        Ok(())
    }
}

impl PushSrcImpl for KafkaSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        self.next_buffer().map(CreateSuccess::NewBuffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_survive_a_poisoned_state_lock() {
        gst::init().unwrap();
        crate::plugin_register_static().unwrap();
        let element = gst::ElementFactory::make("kafkasrc").build().unwrap();
        let imp = element
            .downcast_ref::<super::super::KafkaSrc>()
            .unwrap()
            .imp();
        // A panic while the state is locked, as a record once could cause.
        std::thread::scope(|scope| {
            let poisoner = scope.spawn(|| {
                let _state = imp.state.lock();
                panic!("poisoning the state lock");
            });
            assert!(poisoner.join().is_err());
        });
        assert!(imp.state.is_poisoned());
        // A panic here would abort the host: property reads are FFI calls.
        let stats: gst::Structure = element.property("stats");
        assert_eq!(stats.get::<u64>("buffers-pushed").unwrap(), 0);
        assert_eq!(element.property::<Option<String>>("topic"), None);
    }
}

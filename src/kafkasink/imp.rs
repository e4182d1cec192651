// SPDX-License-Identifier: MPL-2.0

/**
 * SECTION:element-kafkasink
 *
 * Publishes every buffer as one Apache Kafka record. The record value is the
 * buffer's bytes unchanged (a plain consumer gets a decodable JPEG); record
 * headers carry the caps, PTS/DTS/duration, buffer flags, a stream id and a
 * sequence number (docs/wire-format.md), and the record timestamp is the
 * wall-clock capture time. `kafkasrc` rebuilds the stream from them.
 *
 * Records of one element stay in one partition, in order: without `key` or
 * `partition`, records are keyed by the element's stream id. Set `key` per
 * camera to share a topic between cameras.
 *
 * Delivery is checked: a record that finally fails raises an error naming
 * librdkafka's reason and how many records were lost; EOS is let through
 * only once every record is acknowledged (within `flush-timeout-ms`).
 *
 * A live stream is published as it comes (a 1 ms linger), its records
 * queued in librdkafka while the brokers are away. A stream that is not
 * live (files, `appsrc` without `is-live`) is held back instead, with
 * idempotence on and `queue-full=block`: the sink keeps at most five
 * records or 2 MB unacknowledged, whichever is more (two to four batches:
 * less under a small record limit, more with a larger `batch.size` set in
 * `config`), and lingers 5 ms (with `linger-ms=-1`), which spares
 * librdkafka's broker thread a busy loop. When its first frame is of
 * 100-200 kB, the producer is made again with batches of 500 kB instead of
 * 1 MB and a 20 ms linger, so that a batch leaves room in
 * librdkafka's idempotence window (five records) for another request
 * behind it; encoded video, whose first frame is a keyframe, may want
 * `batch.size` set in `config` instead (docs/design.md, "Running ahead").
 * `upstream=auto` asks every source upstream at start; a chain not linked
 * yet (`rtspsrc`, a demuxer) counts as live. `upstream=live` or `not-live` says it instead, e.g. for
 * a camera read through `fdsrc` or `tcpclientsrc`, which are not live.
 *
 * A frame larger than the Kafka record limit (the smallest of
 * `max-message-bytes`, the topic's `max.message.bytes` and the brokers'
 * `message.max.bytes`, read at start) is cut into chunk records on the
 * frame's partition, which `kafkasrc` puts together again
 * (`chunking=auto`); `chunking=off` refuses it with an error. Plain Kafka
 * clients recognise chunks by their `gst-chunk-count` header.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 -e videotestsrc is-live=true ! jpegenc ! kafkasink topic=cam1
 * gst-launch-1.0 -e v4l2src ! image/jpeg ! kafkasink topic=cams key=door create-topic=true
 * gst-launch-1.0 -e videotestsrc ! x264enc tune=zerolatency ! h264parse ! kafkasink topic=h264 \
 *     bootstrap-servers=kafka1:9092,kafka2:9092 \
 *     config="config,security.protocol=SASL_SSL,sasl.mechanism=PLAIN,sasl.username=u,sasl.password=p"
 * ]|
 *
 * ## URIs
 * `kafka://host:port[,host:port…]/topic?property=value&…` sets the
 * brokers, the topic and any property given as a percent-encoded query
 * parameter; gst-launch-1.0 takes the URI in place of the element:
 * |[
 * gst-launch-1.0 -e videotestsrc ! jpegenc ! "kafka://127.0.0.1:9092/cam1?create-topic=true"
 * ]|
 *
 * Caps travel as text in a record header, which `kafkasrc` accepts up to
 * 64 KiB: longer caps (a large `streamheader` or `codec_data`) fail
 * negotiation with an error, unless `write-headers` is off.
 *
 * Secrets given in `config` (e.g. `sasl.password`) read back as `***`;
 * `config-file` keeps them off the command line as well.
 *
 * ## Messages
 * `kafka-statistics` (element message, when `statistics-interval-ms` > 0):
 * field `json` holds librdkafka's statistics document.
 */
use std::ffi::CString;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use rdkafka::admin::{
    AdminClient, AdminOptions, NewTopic, OwnedResourceSpecifier, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::types::RDKafka;

use super::chunking::{self, Plan};
use super::delivery::{self, Delivery, QueueBound, RunAhead, SinkContext};
use super::headers::{self, CHUNK_HEADERS_MAX_LEN, CapsTooLong, HeaderWriter};
use super::liveness;
use super::produce::{self, Frame};
use super::{Acks, Chunking, Compression, QueueFull, Upstream};
use crate::brokerwatch::{self, BrokerWatch, LibrdkafkaClient};
use crate::capturetime;
use crate::kafka::{self, ClientSettings, KafkaContext, TopicError, TopicInfo};
use crate::runtime::{self, Canceller};
use crate::throttle::Throttle;
use crate::uri;
use crate::wireformat;

const DEFAULT_ACKS: Acks = Acks::All;
const DEFAULT_ENABLE_IDEMPOTENCE: bool = true;
const DEFAULT_COMPRESSION: Compression = Compression::None;
/// -1: chosen at start, `RUNNING_AHEAD_LINGER_MS` when the stream runs
/// ahead of the acknowledgements, `QUEUEING_LINGER_MS` otherwise.
const DEFAULT_LINGER_MS: i32 = -1;
/// The linger of a stream queued in librdkafka (a live one, or without
/// idempotence, or with queue-full=drop): a live frame waits at most this
/// long for others to batch with.
const QUEUEING_LINGER_MS: u32 = 1;
/// librdkafka's default. The batches waiting behind those in flight must
/// not outlive their linger, or librdkafka's broker thread busy-polls until
/// an answer comes: within 2 MB of 1 MB batches one waits behind one
/// request, and 5 ms held in every run (500 kB batches have
/// `MID_SIZE_FRAME_LINGER_MS`; docs/design.md, "Running ahead"). Batches
/// fill before it when a stream runs ahead, and EOS does not wait it out; a
/// frame that comes slower (paced) waits it out.
const RUNNING_AHEAD_LINGER_MS: u32 = 5;
/// librdkafka's own default: a broker restart, a leader election or a
/// network cut of a few minutes costs no record (docs/design.md).
const DEFAULT_MESSAGE_TIMEOUT_MS: u32 = 300_000;
const DEFAULT_QUEUE_FULL: QueueFull = QueueFull::Block;
const DEFAULT_UPSTREAM: Upstream = Upstream::Auto;
const DEFAULT_CREATE_TOPIC: bool = false;
const DEFAULT_PARTITIONS: i32 = 1;
const DEFAULT_REPLICATION_FACTOR: i32 = -1;
const DEFAULT_RETENTION_MS: i64 = -1;
/// EOS waits as long as librdkafka may still deliver a record.
const DEFAULT_FLUSH_TIMEOUT_MS: u32 = DEFAULT_MESSAGE_TIMEOUT_MS;
const DEFAULT_WRITE_HEADERS: bool = true;
const DEFAULT_PARTITION: i32 = -1;
const DEFAULT_CHUNKING: Chunking = Chunking::Auto;

/// The producer queue (librdkafka's defaults, set explicitly so that the
/// bound stated in the README does not move with librdkafka): 1 GiB holds
/// about 100 s of 1080p 30 fps JPEG (~338 KB frames) while the brokers are
/// away.
const QUEUE_MAX_KBYTES: u32 = 1_048_576;
const QUEUE_MAX_MESSAGES: u32 = 100_000;
/// librdkafka's default `batch.size`: a record limit below it bounds the
/// batches too.
const LIBRDKAFKA_BATCH_SIZE: usize = 1_000_000;
/// librdkafka's idempotence window: it sends no new request while this
/// many records of a partition are in flight (it counts records, not
/// requests; confluentinc/librdkafka#4989).
const IDEMPOTENCE_WINDOW_RECORDS: usize = 5;
/// The batches of a stream that runs ahead in frames of 100–200 kB, whose
/// librdkafka batches of 1 MB (five frames or more) each close the window
/// by themselves, so requests went one at a time: three 157 KB frames in
/// half a megabyte leave room for a second request behind the first.
/// Smaller frames fill the window in any batch, and larger batches then
/// cost fewer round trips; larger frames leave room in 1 MB batches
/// (docs/design.md, "Running ahead").
const MID_SIZE_FRAME_BATCH_SIZE: usize = 500_000;
/// The automatic linger in those batches: smaller frames after the first
/// (a keyframe before delta frames) leave up to three of them behind one
/// request, and 25 KB frames in 500 kB batches outlived a 5 ms linger in
/// some runs, so librdkafka's broker thread busy-polled (docs/design.md,
/// "Running ahead").
const MID_SIZE_FRAME_LINGER_MS: u32 = 20;
/// Requests in flight per connection with idempotence on: one fewer than
/// librdkafka's idempotence window of five. With five on the wire librdkafka
/// builds no sixth request yet still wakes its broker thread at once for the
/// queued records, which then busy-polls until an answer (up to two million
/// `poll` calls for 300 chunked 4K frames); with four, the fifth request waits
/// built and the thread sleeps (docs/design.md, "Requests in flight").
const IDEMPOTENT_MAX_IN_FLIGHT: u32 = 4;
/// A stream that is not live is handed over while its unacknowledged value
/// bytes (requests in flight and those ready behind them) stay within
/// `RUN_AHEAD_BATCHES_MAX` of its batches up to 2 MB, but at least
/// `RUN_AHEAD_BATCHES_MIN`: two of 1 MB or four of 500 kB. Three or four
/// batches of 1 MB left batches waiting behind a closed idempotence window
/// past their linger, and librdkafka's broker thread busy-polled
/// (docs/design.md, "Running ahead") ...
const RUN_AHEAD_BYTES: u64 = 2_000_000;
/// Batches of 500 kB or less (the sink's for 100-200 kB frames, or bounded
/// by a record limit).
const RUN_AHEAD_BATCHES_MAX: u64 = 4;
/// One batch in flight and one ready behind it, however large.
const RUN_AHEAD_BATCHES_MIN: u64 = 2;
/// ... or while fewer records than librdkafka's idempotence window are,
/// however large: frames of a batch each still fill the window.
const RUN_AHEAD_RECORDS: u64 = IDEMPOTENCE_WINDOW_RECORDS as u64;
/// How often a sink blocked on a full queue says so, with how long the
/// brokers have acknowledged nothing.
const QUEUE_FULL_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// What a sink blocked on a full queue says it does, with queue-full=block.
const BLOCKING: &str =
    "holding the stream back until the brokers take records again (queue-full=block)";

/// How long one metadata request of the producer made again at the first
/// frame waits for a broker and its answer (`await_learned_broker`): once
/// the sink lets that producer go, the wait ends this soon after.
const LEARNED_BROKER_SLICE: Duration = Duration::from_secs(1);
/// How many answers from the bootstrap connection `await_learned_broker`
/// takes before it gives up: librdkafka 2.12 drops that connection after
/// its first.
const BOOTSTRAP_ANSWERS: usize = 5;
/// How often a thread waiting for deliveries re-checks, in case a wake-up
/// was missed.
const DELIVERY_POLL: Duration = Duration::from_millis(100);
/// How long EOS holds librdkafka's flush (its linger counted as over) in
/// each of its waits for deliveries: the flush cannot be cancelled.
const EOS_HURRY: Duration = Duration::from_millis(10);
/// How long `stop()` lets in-flight records finish before giving up on
/// them (and reporting them), so that NULL stays prompt.
const STOP_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a topic the broker does not know is looked for again before the
/// sink says it does not exist: a topic created just before the pipeline
/// started can be missing from the broker's metadata for a moment (twice in
/// a few hundred runs of the benchmark's create-then-publish). librdkafka
/// waits up to `topic.metadata.propagation.max.ms` (30 s) for the same
/// reason before it fails records.
const TOPIC_PROPAGATION_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Settings {
    client: ClientSettings,
    topic: Option<String>,
    key: Option<String>,
    partition: i32,
    acks: Acks,
    enable_idempotence: bool,
    compression: Compression,
    linger_ms: i32,
    message_timeout_ms: u32,
    max_message_bytes: u32,
    queue_full: QueueFull,
    upstream: Upstream,
    create_topic: bool,
    partitions: i32,
    replication_factor: i32,
    retention_ms: i64,
    flush_timeout_ms: u32,
    write_headers: bool,
    chunking: Chunking,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            client: ClientSettings::default(),
            topic: None,
            key: None,
            partition: DEFAULT_PARTITION,
            acks: DEFAULT_ACKS,
            enable_idempotence: DEFAULT_ENABLE_IDEMPOTENCE,
            compression: DEFAULT_COMPRESSION,
            linger_ms: DEFAULT_LINGER_MS,
            message_timeout_ms: DEFAULT_MESSAGE_TIMEOUT_MS,
            max_message_bytes: kafka::DEFAULT_MAX_MESSAGE_BYTES,
            queue_full: DEFAULT_QUEUE_FULL,
            upstream: DEFAULT_UPSTREAM,
            create_topic: DEFAULT_CREATE_TOPIC,
            partitions: DEFAULT_PARTITIONS,
            replication_factor: DEFAULT_REPLICATION_FACTOR,
            retention_ms: DEFAULT_RETENTION_MS,
            flush_timeout_ms: DEFAULT_FLUSH_TIMEOUT_MS,
            write_headers: DEFAULT_WRITE_HEADERS,
            chunking: DEFAULT_CHUNKING,
        }
    }
}

impl Settings {
    /// `linger-ms`, or when it is -1 the linger for a stream that runs ahead
    /// of the acknowledgements or not.
    fn effective_linger_ms(&self, runs_ahead: bool) -> u32 {
        match u32::try_from(self.linger_ms) {
            Ok(linger_ms) => linger_ms,
            Err(_) if runs_ahead => RUNNING_AHEAD_LINGER_MS,
            Err(_) => QUEUEING_LINGER_MS,
        }
    }

    /// Whether the stream runs ahead of the acknowledgements
    /// (docs/design.md, "Running ahead"): when upstream is not live,
    /// idempotence is on in `config` (with its window to fill) and
    /// queue-full is block (drop asks for drops, not waits).
    fn runs_ahead(&self, upstream_live: bool, config: &ClientConfig) -> bool {
        !upstream_live && idempotent(config) && self.queue_full == QueueFull::Block
    }

    /// The element's librdkafka settings under the user's, all but the
    /// linger, which depends on them (`producer_config`).
    fn librdkafka_defaults(&self) -> Vec<(&'static str, String)> {
        let compression = match self.compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        };
        vec![
            ("client.id", "gst-kafkasink".into()),
            ("acks", (self.acks as i32).to_string()),
            ("enable.idempotence", self.enable_idempotence.to_string()),
            ("compression.codec", compression.into()),
            ("message.timeout.ms", self.message_timeout_ms.to_string()),
            ("queue.buffering.max.kbytes", QUEUE_MAX_KBYTES.to_string()),
            (
                "queue.buffering.max.messages",
                QUEUE_MAX_MESSAGES.to_string(),
            ),
            ("message.max.bytes", self.max_message_bytes.to_string()),
            // The same key lands in the same partition as with Java clients.
            ("partitioner", "murmur2_random".into()),
            // A typo in `topic` must not create a topic with broker defaults.
            ("allow.auto.create.topics", "false".into()),
            // The connection to a broker learned from the bootstrap
            // metadata waits out this backoff: librdkafka's 100 ms held
            // start() about 50 ms (docs/design.md, "Start-up").
            (
                "reconnect.backoff.ms",
                kafka::RECONNECT_BACKOFF_MS.to_string(),
            ),
        ]
    }

    /// The producer's librdkafka configuration: the defaults above under the
    /// user's settings; unless the user set it, the linger, chosen by
    /// whether the stream runs ahead (which the user's settings decide);
    /// and, when idempotence is on in the end, four requests in flight
    /// unless the user chose.
    fn producer_config(&self, upstream_live: bool) -> Result<ProducerConfig, gst::ErrorMessage> {
        let mut config = self.client.client_config(&self.librdkafka_defaults())?;
        let runs_ahead = self.runs_ahead(upstream_live, &config);
        let linger_chosen = self.linger_ms < 0 && kafka::setting(&config, "linger.ms").is_none();
        if kafka::setting(&config, "linger.ms").is_none() {
            config.set(
                "linger.ms",
                self.effective_linger_ms(runs_ahead).to_string(),
            );
        }
        let batch_size = match kafka::setting(&config, "batch.size") {
            Some(_) => None,
            None => Some(LIBRDKAFKA_BATCH_SIZE),
        };
        if idempotent(&config) && kafka::setting(&config, "max.in.flight").is_none() {
            config.set(
                "max.in.flight.requests.per.connection",
                IDEMPOTENT_MAX_IN_FLIGHT.to_string(),
            );
        }
        Ok(ProducerConfig {
            config,
            runs_ahead,
            batch_size,
            linger_chosen,
        })
    }
}

/// The producer's librdkafka configuration, and what the sink chose in it.
#[derive(Clone)]
struct ProducerConfig {
    config: ClientConfig,
    /// Whether the stream runs ahead of the acknowledgements.
    runs_ahead: bool,
    /// The batch size the sink chose, `None` when the user set `batch.size`.
    batch_size: Option<usize>,
    /// Whether the sink chose the linger (the user set none).
    linger_chosen: bool,
}

impl ProducerConfig {
    /// The `batch.size` the producer must be made again with: the record
    /// limit, when it is below the batch size the sink chose.
    fn bounded_batch_size(&self, record_limit: RecordLimit) -> Option<usize> {
        self.batch_size
            .filter(|&chosen| record_limit.bytes < chosen)
            .map(|_| record_limit.bytes)
    }

    /// The batch size the sink chose, bounded by the record limit; `None`
    /// when the user set `batch.size`.
    fn chosen_batch_size(&self, record_limit: RecordLimit) -> Option<usize> {
        self.bounded_batch_size(record_limit).or(self.batch_size)
    }

    /// The `batch.size` a stream that runs ahead in frames of `frame_size`
    /// bytes is better sent in than the one its producer was made with
    /// (`record_limit` bounding it): `MID_SIZE_FRAME_BATCH_SIZE` when one
    /// of its batches would fill librdkafka's idempotence window and one of
    /// those would not. The user's `batch.size` stays.
    fn batch_size_for_frames(&self, frame_size: usize, record_limit: RecordLimit) -> Option<usize> {
        let made_with = self.chosen_batch_size(record_limit)?;
        let frames_per_batch = |batch_size: usize| batch_size / frame_size.max(1);
        (self.runs_ahead
            && MID_SIZE_FRAME_BATCH_SIZE < made_with
            && frames_per_batch(made_with) >= IDEMPOTENCE_WINDOW_RECORDS
            && frames_per_batch(MID_SIZE_FRAME_BATCH_SIZE) < IDEMPOTENCE_WINDOW_RECORDS)
            .then_some(MID_SIZE_FRAME_BATCH_SIZE)
    }

    /// This configuration with batches of `bytes`.
    fn with_batch_size(&self, bytes: usize) -> ProducerConfig {
        let mut config = self.config.clone();
        config.set("batch.size", bytes.to_string());
        ProducerConfig {
            config,
            batch_size: Some(bytes),
            ..self.clone()
        }
    }

    /// This configuration for frames of 100-200 kB
    /// (`batch_size_for_frames`): batches of `MID_SIZE_FRAME_BATCH_SIZE`
    /// and, unless the user set one, a linger of `MID_SIZE_FRAME_LINGER_MS`.
    fn for_mid_size_frames(&self) -> ProducerConfig {
        let mut sized = self.with_batch_size(MID_SIZE_FRAME_BATCH_SIZE);
        if self.linger_chosen {
            sized
                .config
                .set("linger.ms", MID_SIZE_FRAME_LINGER_MS.to_string());
        }
        sized
    }

    /// The linger in ms the producer is made with (librdkafka takes
    /// fractions of a millisecond).
    fn linger_ms(&self) -> Option<f64> {
        kafka::setting(&self.config, "linger.ms").and_then(|value| value.trim().parse().ok())
    }

    /// The bytes of a batch: the sink's batch size bounded by the record
    /// limit, or the user's `batch.size`.
    fn batch_bytes(&self, record_limit: RecordLimit) -> u64 {
        match self.chosen_batch_size(record_limit) {
            Some(bytes) => bytes as u64,
            // A value librdkafka does not parse fails the producer anyway.
            None => kafka::setting(&self.config, "batch.size")
                .and_then(|value| value.trim().parse::<u64>().ok())
                .unwrap_or(LIBRDKAFKA_BATCH_SIZE as u64),
        }
    }
}

/// Kafka's stock `message.max.bytes`, also the default of a topic's
/// `max.message.bytes`: what a limit the broker does not tell is assumed
/// to be.
const KAFKA_DEFAULT_RECORD_LIMIT: usize = 1_048_588;

/// The largest record the producer, the topic and the brokers accept, and
/// the setting that sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordLimit {
    bytes: usize,
    setting: &'static str,
}

impl RecordLimit {
    /// The smallest of the producer's limit and those the broker told; one
    /// it did not tell is taken as Kafka's default.
    fn smallest(producer: usize, limits: &BrokerLimits) -> RecordLimit {
        let told = |told: Option<usize>, setting, assumed| match told {
            Some(bytes) => (bytes, setting),
            None => (KAFKA_DEFAULT_RECORD_LIMIT, assumed),
        };
        [
            (producer, "the max-message-bytes property"),
            told(
                limits.topic,
                "the topic's max.message.bytes",
                "the topic's max.message.bytes (could not be read: Kafka's default assumed)",
            ),
            told(
                limits.broker,
                "the brokers' message.max.bytes",
                "the brokers' message.max.bytes (could not be read: Kafka's default assumed)",
            ),
        ]
        .into_iter()
        .map(|(bytes, setting)| RecordLimit { bytes, setting })
        .min_by_key(|limit| limit.bytes)
        .unwrap_or(RecordLimit {
            bytes: producer,
            setting: "the max-message-bytes property",
        })
    }
}

/// Whether `config` makes an idempotent producer: the property, `config`,
/// or a `transactional.id`, which implies it.
fn idempotent(config: &ClientConfig) -> bool {
    kafka::bool_setting(config, "enable.idempotence") == Some(true)
        || kafka::setting(config, "transactional.id").is_some()
}

/// How far an idempotent producer of a stream that is not live runs ahead:
/// four of its batches (`ProducerConfig::batch_bytes`) up to
/// `RUN_AHEAD_BYTES` but at least two, or five records (docs/design.md,
/// "Running ahead").
fn run_ahead_bound(config: &ProducerConfig, record_limit: RecordLimit) -> RunAhead {
    let batch = config.batch_bytes(record_limit);
    RunAhead {
        bytes: batch
            .saturating_mul(RUN_AHEAD_BATCHES_MAX)
            .min(RUN_AHEAD_BYTES)
            .max(batch.saturating_mul(RUN_AHEAD_BATCHES_MIN)),
        records: RUN_AHEAD_RECORDS,
    }
}

/// A producer of `config` posting to `element`, with its own delivery
/// accounting.
fn new_producer(
    config: &ClientConfig,
    element: &gst::Element,
) -> Result<ThreadedProducer<SinkContext>, gst::ErrorMessage> {
    config
        .create_with_context(KafkaContext::with(element, Delivery::default()))
        .map_err(kafka::config_error)
}

/// The producer queue's bound in `config`: what the sink sets, or what
/// `config` or `config-file` set instead.
fn queue_bound(config: &ClientConfig) -> QueueBound {
    let setting = |key: &str, default: u32| {
        config
            .get(key)
            .and_then(|value| value.trim().parse::<u64>().ok())
            .unwrap_or(u64::from(default))
    };
    QueueBound {
        bytes: setting("queue.buffering.max.kbytes", QUEUE_MAX_KBYTES).saturating_mul(1024),
        records: setting("queue.buffering.max.messages", QUEUE_MAX_MESSAGES),
    }
}

/// Describes `topic` until the broker knows it or `patience` has passed
/// (each look waits up to `timeout`): a topic created moments before
/// reaches the broker's metadata a little later.
fn describe_until_found(
    producer: &ThreadedProducer<SinkContext>,
    topic: &str,
    timeout: Duration,
    patience: Duration,
) -> Result<TopicInfo, TopicError> {
    let deadline = Instant::now() + patience;
    loop {
        match kafka::describe_topic(producer.client(), topic, timeout) {
            Err(TopicError::Missing) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            described => return described,
        }
    }
}

/// Asks for `topic`'s metadata until a broker the metadata named, not the
/// bootstrap connection (broker -1), answers, until `deadline`, each
/// request waiting at most `slice`, and while `in_use()`. An idempotent
/// producer asks for its producer id after a metadata response from a
/// broker that is up, and librdkafka drops the bootstrap connection after
/// its first answer, when none was: until a request needs another broker,
/// the producer id waits for librdkafka's retries, 500 ms apart
/// (docs/design.md, "No 500 ms stall on the first record"). Returns
/// whether such a broker answered.
fn await_learned_broker(
    producer: &ThreadedProducer<SinkContext>,
    topic: &str,
    (deadline, slice): (Instant, Duration),
    in_use: impl Fn() -> bool,
) -> bool {
    let mut bootstrap_answers = 0;
    while in_use() && bootstrap_answers < BOOTSTRAP_ANSWERS {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let asked_at = Instant::now();
        match producer
            .client()
            .fetch_metadata(Some(topic), left.min(slice))
        {
            Ok(metadata) if metadata.orig_broker_id() >= 0 => return true,
            Ok(_) => bootstrap_answers += 1,
            // No broker was usable or answered within the slice; one that
            // failed at once is not asked again at once.
            Err(_) => std::thread::sleep(slice.min(left).saturating_sub(asked_at.elapsed())),
        }
    }
    false
}

/// `await_learned_broker` for at most `timeout`, in one request: at start,
/// which nothing else waits on.
fn await_learned_broker_within(
    producer: &ThreadedProducer<SinkContext>,
    topic: &str,
    timeout: Duration,
) -> bool {
    await_learned_broker(producer, topic, (Instant::now() + timeout, timeout), || {
        true
    })
}

/// Where and how the records of one run go, fixed at start; shared with
/// the streaming thread without holding the state lock.
struct Target {
    producer: ThreadedProducer<SinkContext>,
    topic: String,
    /// `topic`, as librdkafka takes it.
    topic_name: CString,
    key: String,
    partition: Option<i32>,
    queue_full: QueueFull,
    /// What librdkafka's queue holds at most, as configured.
    queue_bound: QueueBound,
    /// How far the stream may run ahead of acknowledgements: `None` for a
    /// live upstream, without idempotence (no window to fill), or with
    /// queue-full=drop (which asks for drops, not waits).
    run_ahead: Option<RunAhead>,
    /// The linger and the batch size the producer was made with, for
    /// `stats`.
    linger_ms: f64,
    batch_size: u64,
    record_limit: RecordLimit,
    chunking: Chunking,
    flush_timeout: Duration,
    drop_warnings: Throttle,
    block_warnings: Throttle,
}

impl Target {
    fn delivery(&self) -> &Delivery {
        &self.producer.context().extra
    }

    /// This target with another producer, before any record was sent.
    fn with_producer(
        &self,
        producer: ThreadedProducer<SinkContext>,
        (batch_size, linger_ms): (u64, f64),
        run_ahead: Option<RunAhead>,
    ) -> Target {
        Target {
            producer,
            topic: self.topic.clone(),
            topic_name: self.topic_name.clone(),
            key: self.key.clone(),
            partition: self.partition,
            queue_full: self.queue_full,
            queue_bound: self.queue_bound,
            run_ahead,
            linger_ms,
            batch_size,
            record_limit: self.record_limit,
            chunking: self.chunking,
            flush_timeout: self.flush_timeout,
            drop_warnings: Throttle::default(),
            block_warnings: Throttle::new(QUEUE_FULL_WARNING_INTERVAL),
        }
    }

    /// A record of this target whose value is `frame[range]`.
    fn record<'a>(
        &'a self,
        frame: &'a Frame,
        range: std::ops::Range<usize>,
        timestamp_ms: i64,
        headers: Option<OwnedHeaders>,
    ) -> produce::Record<'a> {
        produce::Record {
            topic: &self.topic_name,
            partition: self.partition,
            key: self.key.as_bytes(),
            frame,
            range,
            timestamp_ms,
            headers,
        }
    }
}

// SAFETY: the producer, and so its handle, lives as long as the target.
unsafe impl LibrdkafkaClient for Target {
    fn librdkafka_client(&self) -> *mut RDKafka {
        self.producer.client().native_ptr()
    }
}

/// The record limits the broker told at start.
#[derive(Debug, Default, Clone)]
struct BrokerLimits {
    topic: Option<usize>,
    broker: Option<usize>,
    /// Why a limit could not be read, when the broker said.
    error: Option<String>,
}

impl BrokerLimits {
    /// The settings that could not be read, for a warning; `None` when
    /// both were.
    fn unread(&self) -> Option<String> {
        let unread: Vec<&str> = [
            (self.topic, "the topic's max.message.bytes"),
            (self.broker, "the brokers' message.max.bytes"),
        ]
        .into_iter()
        .filter(|(bytes, _)| bytes.is_none())
        .map(|(_, setting)| setting)
        .collect();
        if unread.is_empty() {
            return None;
        }
        let why = self
            .error
            .as_ref()
            .map(|error| format!(" ({error})"))
            .unwrap_or_else(|| " (no answer to DescribeConfigs)".to_string());
        Some(format!("{}{why}", unread.join(" and ")))
    }
}

struct Started {
    /// Declared first: stops before the client is let go.
    _broker_watch: Option<BrokerWatch>,
    target: Arc<Target>,
    /// `None` when `write-headers` is off.
    headers: Option<HeaderWriter>,
    seq: u64,
    /// The producer's configuration until the first frame, whose size may
    /// choose another batch size (`ProducerConfig::batch_size_for_frames`).
    batch_sizing: Option<BatchSizing>,
}

/// What the first frame needs to make the producer again.
struct BatchSizing {
    config: ProducerConfig,
    connect_timeout: Duration,
}

#[derive(Default)]
enum State {
    #[default]
    Stopped,
    Started(Box<Started>),
}

#[derive(Default)]
pub struct KafkaSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    canceller: Canceller,
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "kafkasink",
        gst::DebugColorFlags::empty(),
        Some("Kafka record sink"),
    )
});

impl KafkaSink {
    /// `buffer` mapped for librdkafka to read in place (produce::frame).
    fn frame(&self, buffer: &gst::Buffer) -> Result<Frame, gst::FlowError> {
        produce::frame(buffer).map_err(|reason| {
            gst::element_imp_error!(self, gst::ResourceError::Read, ("{reason}"));
            gst::FlowError::Error
        })
    }

    /// The wall-clock capture time of `buffer` in ms since the Unix epoch:
    /// from a reference timestamp meta (e.g. rtspsrc's RTCP sender reports)
    /// when there is one, otherwise its running time mapped to the real-time
    /// clock.
    fn capture_time_ms(&self, buffer: &gst::BufferRef) -> i64 {
        if let Some(since_epoch) = capturetime::capture_time(buffer) {
            return since_epoch.as_millis() as i64;
        }
        let now = capturetime::unix_now_ms();
        let obj = self.obj();
        let running_time = buffer.pts().and_then(|pts| {
            obj.segment()
                .downcast_ref::<gst::ClockTime>()
                .and_then(|segment| segment.to_running_time(pts))
        });
        match (obj.clock(), obj.base_time(), running_time) {
            (Some(clock), Some(base_time), Some(running_time)) => {
                // i128: a PTS from upstream may be anything up to u64::MAX.
                let buffer_clock = base_time.nseconds() as i128 + running_time.nseconds() as i128;
                let age_ns = clock.time().nseconds() as i128 - buffer_clock;
                i64::try_from(i128::from(now) - age_ns / 1_000_000).unwrap_or(now)
            }
            _ => now,
        }
    }

    /// Raises the first delivery failure not yet reported.
    fn check_delivery(&self, delivery: &Delivery, topic: &str) -> Result<(), gst::FlowError> {
        match delivery.unreported_failure() {
            None => Ok(()),
            Some((count, reason)) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    ("{count} record(s) not delivered to Kafka topic {topic}: {reason}")
                );
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Waits until every record handed to librdkafka is acknowledged or has
    /// failed, for at most `timeout`, without waiting out the linger: no
    /// record will join the last batch. Returns how many are still in
    /// flight.
    fn wait_delivered(
        &self,
        target: &Target,
        timeout: Duration,
    ) -> Result<u64, runtime::Cancelled> {
        let delivery = target.delivery();
        let deadline = Instant::now() + timeout;
        loop {
            let in_flight = delivery.counters().in_flight();
            let now = Instant::now();
            if in_flight == 0 || now >= deadline {
                return Ok(in_flight);
            }
            // Again each time: librdkafka wakes only brokers that are up.
            produce::hurry(&target.producer, EOS_HURRY);
            self.wait_for_progress(delivery, (deadline - now).min(DELIVERY_POLL))
                .map_err(|_| runtime::Cancelled)?;
        }
    }

    /// Waits for the next finished delivery, for at most `slice`.
    /// GstBaseSink cancels the wait on a pause as well as on a flush or a
    /// stop: after a pause it waits for PLAYING again, as GstBaseSink asks of
    /// an unlocked render or event, and only a flush or a stop gives
    /// `Flushing`.
    fn wait_for_progress(
        &self,
        delivery: &Delivery,
        slice: Duration,
    ) -> Result<(), gst::FlowError> {
        let waited = runtime::wait(&self.canceller, async {
            let _ = tokio::time::timeout(slice, delivery.progress()).await;
        });
        if waited.is_err() {
            self.obj().wait_preroll()?;
        }
        Ok(())
    }

    /// Handles EOS: every record acknowledged before EOS goes downstream.
    fn flush_for_eos(&self) -> Result<(), gst::ErrorMessage> {
        let Some(target) = self.target() else {
            return Ok(());
        };
        let (delivery, topic, timeout) = (target.delivery(), &target.topic, target.flush_timeout);
        gst::debug!(
            CAT,
            imp = self,
            "EOS: waiting for every record to be acknowledged"
        );
        let in_flight = self.wait_delivered(&target, timeout).map_err(|_| {
            gst::error_msg!(
                gst::ResourceError::Write,
                ("flushing while waiting for deliveries")
            )
        })?;
        if let Some((count, reason)) = delivery.unreported_failure() {
            return Err(gst::error_msg!(
                gst::ResourceError::Write,
                ("{count} record(s) not delivered to Kafka topic {topic}: {reason}")
            ));
        }
        if in_flight > 0 {
            return Err(gst::error_msg!(
                gst::ResourceError::Write,
                (
                    "{in_flight} record(s) not acknowledged by Kafka within flush-timeout-ms ({} ms)",
                    timeout.as_millis()
                )
            ));
        }
        gst::debug!(
            CAT,
            imp = self,
            "EOS: all {} records acknowledged",
            delivery.counters().records_acked
        );
        Ok(())
    }

    fn target(&self) -> Option<Arc<Target>> {
        match &*self.state.lock().unwrap() {
            State::Started(started) => Some(started.target.clone()),
            State::Stopped => None,
        }
    }

    /// Whether upstream is live: as `upstream` says, or with `auto` as the
    /// sources upstream say at start (liveness::fed_live), what cannot be
    /// told yet counting as live.
    fn upstream_live(&self, upstream: Upstream) -> bool {
        let live = match upstream {
            Upstream::Auto => liveness::fed_live(self.obj().sink_pad()),
            Upstream::Live => true,
            Upstream::NotLive => false,
        };
        gst::debug!(CAT, imp = self, "upstream live: {live} ({upstream:?})");
        live
    }

    fn stats(&self) -> gst::Structure {
        let target = self.target();
        let counters = target
            .as_ref()
            .map_or_else(delivery::Counters::default, |target| {
                target.delivery().counters()
            });
        let producer = target.map(|target| (target.linger_ms, target.batch_size, target.run_ahead));
        gst::Structure::builder("kafkasink-stats")
            .field("records-sent", counters.records_sent)
            .field("bytes-sent", counters.bytes_sent)
            .field("records-acked", counters.records_acked)
            .field("bytes-acked", counters.bytes_acked)
            .field("in-flight", counters.in_flight())
            .field("delivery-errors", counters.delivery_errors)
            .field("dropped", counters.dropped)
            .field("queue-full-waits", counters.queue_full_waits)
            .field("frames-chunked", counters.frames_chunked)
            .field("chunks-sent", counters.chunks_sent)
            .field("last-partition", counters.last_partition)
            .field("last-offset", counters.last_offset)
            .field("delivery-latency-last-us", counters.latency_last_us)
            .field("delivery-latency-avg-us", counters.latency_avg_us())
            .field("delivery-latency-max-us", counters.latency_max_us)
            .field_if_some("linger-ms", producer.map(|(linger_ms, _, _)| linger_ms))
            .field_if_some("batch-size", producer.map(|(_, batch_size, _)| batch_size))
            .field_if_some(
                "run-ahead-bytes",
                producer.map(|(_, _, ahead)| ahead.map_or(0, |ahead| ahead.bytes)),
            )
            .build()
    }

    /// Makes sure the topic exists (creating it when asked) and returns its
    /// partition count and the record size limits of the topic and of the
    /// brokers, as far as the broker tells.
    fn prepare_topic(
        &self,
        settings: &Settings,
        producer: &ThreadedProducer<SinkContext>,
        admin: &AdminClient<KafkaContext>,
    ) -> Result<(usize, BrokerLimits), gst::ErrorMessage> {
        let topic = settings.topic.as_deref().unwrap_or_default();
        let client = &settings.client;
        let timeout = client.connect_timeout();
        let patience = if settings.create_topic {
            Duration::ZERO
        } else {
            TOPIC_PROPAGATION_GRACE
        };
        let TopicInfo {
            partitions,
            brokers,
        } = match describe_until_found(producer, topic, timeout, patience) {
            Ok(info) => info,
            Err(TopicError::Missing) if settings.create_topic => {
                self.create_topic(settings, admin)?;
                self.await_created_topic(producer, topic, timeout)?
            }
            Err(TopicError::Missing) => {
                return Err(gst::error_msg!(
                    gst::ResourceError::NotFound,
                    ("topic {topic} does not exist and create-topic is off")
                ));
            }
            Err(err) => {
                let detail = producer.context().last_error();
                return Err(kafka::topic_error(
                    &client.bootstrap_servers,
                    topic,
                    err,
                    detail,
                ));
            }
        };
        if settings.partition >= 0 && settings.partition as usize >= partitions {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                (
                    "partition {} does not exist: topic {topic} has {partitions} partition(s)",
                    settings.partition
                )
            ));
        }
        // The producer's wait for a broker other than the bootstrap one
        // (await_learned_broker), side by side with the admin client's
        // requests for the limits, which wait for their brokers too.
        let limits = std::thread::scope(|scope| {
            let warming = scope.spawn(|| await_learned_broker_within(producer, topic, timeout));
            let limits = self.record_limits(admin, topic, &brokers, timeout);
            if !warming.join().unwrap_or(false) {
                gst::debug!(CAT, imp = self, "no broker but the bootstrap one answered");
            }
            limits
        });
        Ok((partitions, limits))
    }

    /// `producer`, or when the record limit is below the batch size the sink
    /// chose (the user did not set one), a producer whose batches stay
    /// within the limit: librdkafka puts records of a partition together up
    /// to `batch.size`, and a broker refuses a batch over the topic's limit
    /// however small its records (two chunks of a 100 kB limit, say).
    fn bounded_batches(
        &self,
        producer: ThreadedProducer<SinkContext>,
        config: &ProducerConfig,
        element: &gst::Element,
        (topic, timeout): (&str, Duration),
        limit: RecordLimit,
    ) -> Result<ThreadedProducer<SinkContext>, gst::ErrorMessage> {
        let Some(batch_size) = config.bounded_batch_size(limit) else {
            return Ok(producer);
        };
        gst::debug!(
            CAT,
            imp = self,
            "record limit {} bytes: batches bounded to it",
            limit.bytes
        );
        let replacement = new_producer(&config.with_batch_size(batch_size).config, element)?;
        await_learned_broker_within(&replacement, topic, timeout);
        // Dropping a producer joins its polling thread: not here.
        std::thread::spawn(move || drop(producer));
        Ok(replacement)
    }

    /// A new topic takes a moment to show in the brokers' metadata.
    fn await_created_topic(
        &self,
        producer: &ThreadedProducer<SinkContext>,
        topic: &str,
        timeout: Duration,
    ) -> Result<TopicInfo, gst::ErrorMessage> {
        describe_until_found(producer, topic, timeout, timeout).map_err(|err| {
            gst::error_msg!(
                gst::ResourceError::NotFound,
                ("topic {topic} was created but cannot be described: {err:?}")
            )
        })
    }

    fn create_topic(
        &self,
        settings: &Settings,
        admin: &AdminClient<KafkaContext>,
    ) -> Result<(), gst::ErrorMessage> {
        let topic = settings.topic.as_deref().unwrap_or_default();
        let max_message_bytes = settings.max_message_bytes.to_string();
        let retention_ms = settings.retention_ms.to_string();
        let mut new_topic = NewTopic::new(
            topic,
            settings.partitions,
            TopicReplication::Fixed(settings.replication_factor),
        )
        .set("max.message.bytes", &max_message_bytes);
        if settings.retention_ms >= 0 {
            new_topic = new_topic.set("retention.ms", &retention_ms);
        }
        let timeout = settings.client.connect_timeout();
        let options = AdminOptions::new().operation_timeout(Some(timeout));
        gst::info!(
            CAT,
            imp = self,
            "creating topic {topic} with {} partition(s)",
            settings.partitions
        );
        let result = runtime::wait(&self.canceller, async {
            tokio::time::timeout(timeout, admin.create_topics([&new_topic], &options)).await
        });
        let failure = match result {
            Ok(Ok(Ok(results))) => match results.into_iter().next() {
                Some(Ok(_)) | Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => None,
                Some(Err((_, code))) => Some(code.to_string()),
            },
            Ok(Ok(Err(err))) => Some(err.to_string()),
            Ok(Err(_)) => Some("timed out".into()),
            Err(_) => Some("cancelled".into()),
        };
        match failure {
            None => Ok(()),
            Some(reason) => Err(gst::error_msg!(
                gst::ResourceError::Failed,
                ("cannot create topic {topic}: {reason}")
            )),
        }
    }

    /// The topic's `max.message.bytes` and the smallest `message.max.bytes`
    /// of `brokers`; `None` where the broker does not say (e.g. no
    /// permission to describe configs): the broker still enforces it.
    fn record_limits(
        &self,
        admin: &AdminClient<KafkaContext>,
        topic: &str,
        brokers: &[i32],
        timeout: Duration,
    ) -> BrokerLimits {
        let options = AdminOptions::new().request_timeout(Some(timeout));
        // One request per resource: a broker describes only its own
        // configs, so each broker's request goes to that broker.
        let resources: Vec<ResourceSpecifier> = std::iter::once(ResourceSpecifier::Topic(topic))
            .chain(brokers.iter().map(|&id| ResourceSpecifier::Broker(id)))
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        // Each request is sent when it is made: all are on their way
        // before the first answer is awaited.
        let requests: Vec<_> = resources
            .iter()
            .map(|resource| admin.describe_configs([resource], &options))
            .collect();
        let (described, error) = runtime::wait(&self.canceller, async {
            let mut described = Vec::new();
            let mut error = None;
            for request in requests {
                match tokio::time::timeout_at(deadline, request).await {
                    Ok(Ok(results)) => {
                        for result in results {
                            match result {
                                Ok(config) => described.push(config),
                                Err(code) => {
                                    error.get_or_insert_with(|| format!("DescribeConfigs: {code}"));
                                }
                            }
                        }
                    }
                    Ok(Err(err)) => {
                        error.get_or_insert_with(|| format!("DescribeConfigs: {err}"));
                    }
                    Err(_) => {
                        error.get_or_insert_with(|| {
                            "DescribeConfigs unanswered within connect-timeout-ms".to_string()
                        });
                    }
                }
            }
            (described, error)
        })
        .unwrap_or_default();
        let mut limits = BrokerLimits {
            error,
            ..BrokerLimits::default()
        };
        for resource in described {
            let (name, is_topic) = match resource.specifier {
                OwnedResourceSpecifier::Topic(_) => ("max.message.bytes", true),
                OwnedResourceSpecifier::Broker(_) => ("message.max.bytes", false),
                _ => continue,
            };
            let Some(bytes) = resource
                .get(name)
                .and_then(|entry| entry.value.as_deref()?.parse::<usize>().ok())
            else {
                continue;
            };
            let slot = if is_topic {
                &mut limits.topic
            } else {
                &mut limits.broker
            };
            *slot = Some(slot.map_or(bytes, |known| known.min(bytes)));
        }
        gst::debug!(
            CAT,
            imp = self,
            "record limits: topic {topic} max.message.bytes {:?}, brokers {brokers:?} message.max.bytes {:?}",
            limits.topic,
            limits.broker
        );
        limits
    }

    fn send(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let size = buffer.size();
        let (target, writer, seq, batch_sizing) = {
            let mut state = self.state.lock().unwrap();
            let State::Started(started) = &mut *state else {
                gst::element_imp_error!(self, gst::CoreError::Failed, ("not started"));
                return Err(gst::FlowError::Error);
            };
            let seq = started.seq;
            started.seq += 1;
            (
                started.target.clone(),
                started.headers.clone(),
                seq,
                started.batch_sizing.take(),
            )
        };
        let target = match batch_sizing {
            Some(sizing) => self
                .resize_batches(target, sizing, size)
                .inspect_err(|_| self.give_back(seq))?,
            None => target,
        };
        let delivery = target.delivery();
        let topic = target.topic.as_str();
        self.check_delivery(delivery, topic)?;
        self.hold_back(&target, size)
            .inspect_err(|_| self.give_back(seq))?;
        let headers = writer.as_ref().map(|writer| writer.headers(seq, buffer));

        let headers_len = headers.as_ref().map_or(0, |h| h.len);
        let record_size = headers::record_size(target.key.len(), size, headers_len);
        let limit = target.record_limit;
        if record_size > limit.bytes {
            if target.chunking == Chunking::Auto
                && let Some(writer) = &writer
            {
                return self.send_chunks(&target, writer, seq, buffer, headers_len);
            }
            let instead = match target.chunking {
                Chunking::Auto => "write-headers=true to let chunking=auto cut it",
                Chunking::Off => "chunking=auto to cut it into chunk records",
            };
            gst::element_imp_error!(
                self,
                gst::ResourceError::Write,
                (
                    "record of {record_size} bytes (a frame of {size} bytes, a key of {} bytes, \
                     {headers_len} bytes of headers) is larger than the Kafka record limit of {} \
                     bytes: raise {}, or set {instead}",
                    target.key.len(),
                    limit.bytes,
                    limit.setting
                )
            );
            return Err(gst::FlowError::Error);
        }

        let frame = self.frame(buffer)?;
        let mut record = target.record(
            &frame,
            0..size,
            self.capture_time_ms(buffer),
            headers.map(|headers| headers.headers),
        );
        let mut waited = false;
        loop {
            let sent_at = delivery.sending(size);
            let Err(err) = produce::send(&target.producer, &mut record, sent_at) else {
                return Ok(gst::FlowSuccess::Ok);
            };
            delivery.not_sent(size);
            if err.rdkafka_error_code() != Some(RDKafkaErrorCode::QueueFull) {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Write,
                    (
                        "cannot produce a record of {size} bytes to topic {topic}: {}",
                        delivery::describe_delivery_error(&err, size)
                    )
                );
                return Err(gst::FlowError::Error);
            }
            match target.queue_full {
                QueueFull::Drop => {
                    self.drop_record(&target);
                    return Ok(gst::FlowSuccess::Ok);
                }
                QueueFull::Block => self
                    .wait_for_room(&target, &mut waited, BLOCKING)
                    .inspect_err(|_| self.give_back(seq))?,
            }
        }
    }

    /// `target`, or at the first frame, when frames of its size are better
    /// sent in other batches (`ProducerConfig::batch_size_for_frames`), a
    /// target whose producer is made again with them. The new producer
    /// connects while the first frames wait in its queue.
    fn resize_batches(
        &self,
        target: Arc<Target>,
        sizing: BatchSizing,
        frame_size: usize,
    ) -> Result<Arc<Target>, gst::FlowError> {
        let Some(batch_size) = sizing
            .config
            .batch_size_for_frames(frame_size, target.record_limit)
        else {
            return Ok(target);
        };
        gst::debug!(
            CAT,
            imp = self,
            "frames of {frame_size} bytes: producer made again with batches of {batch_size} bytes"
        );
        let element = self.obj().upcast_ref::<gst::Element>().clone();
        let config = sizing.config.for_mid_size_frames();
        let producer = new_producer(&config.config, &element).map_err(|err| {
            self.post_error_message(err);
            gst::FlowError::Error
        })?;
        let run_ahead = Some(run_ahead_bound(&config, target.record_limit));
        let batch_bytes = config.batch_bytes(target.record_limit);
        let linger_ms = config.linger_ms().unwrap_or(target.linger_ms);
        let resized = Arc::new(target.with_producer(producer, (batch_bytes, linger_ms), run_ahead));
        let broker_watch = brokerwatch::watch(&element, &resized, &config.config);
        match &mut *self.state.lock().unwrap() {
            State::Started(started) => {
                started.target = resized.clone();
                started._broker_watch = broker_watch;
            }
            // Only stop() leaves Started, after the streaming thread.
            State::Stopped => {
                std::thread::spawn(move || drop((target, resized)));
                return Err(gst::FlowError::Flushing);
            }
        }
        let warming = resized.clone();
        let deadline = Instant::now() + sizing.connect_timeout;
        std::thread::spawn(move || {
            // Until the sink lets the producer go (a stop).
            let in_use = || Arc::strong_count(&warming) > 1;
            await_learned_broker(
                &warming.producer,
                &warming.topic,
                (deadline, LEARNED_BROKER_SLICE),
                in_use,
            )
        });
        // Dropping a producer joins its polling thread: not here.
        std::thread::spawn(move || drop(target));
        Ok(resized)
    }

    /// Waits while a stream that is not live is as far ahead of the
    /// acknowledgements as `run_ahead` lets it, saying so every
    /// QUEUE_FULL_WARNING_INTERVAL while the brokers acknowledge nothing.
    fn hold_back(&self, target: &Target, size: usize) -> Result<(), gst::FlowError> {
        let Some(ahead) = target.run_ahead else {
            return Ok(());
        };
        let delivery = target.delivery();
        while !delivery.may_run_ahead(ahead, size as u64) {
            if delivery.unacknowledged_for(Instant::now()) >= QUEUE_FULL_WARNING_INTERVAL
                && target.block_warnings.allow().is_some()
            {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    (
                        "{}; holding the stream back until the brokers acknowledge records \
                         again (upstream is not live)",
                        self.outage(target)
                    )
                );
            }
            self.await_delivery(target)?;
        }
        Ok(())
    }

    /// Waits for the next finished delivery (or DELIVERY_POLL), then raises
    /// any failure.
    fn await_delivery(&self, target: &Target) -> Result<(), gst::FlowError> {
        let delivery = target.delivery();
        self.wait_for_progress(delivery, DELIVERY_POLL)?;
        self.check_delivery(delivery, &target.topic)
    }

    /// librdkafka's queue is full (queue-full=block, or the rest of a frame
    /// whose first chunk is sent): waits for a delivery to make room, and
    /// says so every QUEUE_FULL_WARNING_INTERVAL, `holding` saying what
    /// waits and why.
    fn wait_for_room(
        &self,
        target: &Target,
        waited: &mut bool,
        holding: &str,
    ) -> Result<(), gst::FlowError> {
        let delivery = target.delivery();
        if !*waited {
            *waited = true;
            delivery.queue_full_wait();
        }
        if target.block_warnings.allow().is_some() {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "Kafka producer queue full: {}; {holding}",
                    self.outage(target)
                )
            );
        }
        gst::trace!(CAT, imp = self, "queue full, waiting for deliveries");
        self.await_delivery(target)
    }

    /// Sends frame `seq`, too large for one record, as chunk records
    /// (docs/wire-format.md) to one partition, in order. With
    /// queue-full=drop the whole frame is dropped unless the queue has room
    /// for all its chunks beside what is in flight: once its first chunk is
    /// sent, the others wait for room (which only a stalled delivery of
    /// this producer's own records can take), as a frame cut short is lost
    /// for readers anyway.
    fn send_chunks(
        &self,
        target: &Target,
        writer: &HeaderWriter,
        seq: u64,
        buffer: &gst::Buffer,
        frame_headers_len: usize,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (topic, limit) = (target.topic.as_str(), target.record_limit);
        let plan = Plan::new(
            buffer.size(),
            target.key.len(),
            frame_headers_len,
            limit.bytes,
        )
        .map_err(|chunking::NoRoom(room)| {
            gst::element_imp_error!(
                self,
                gst::ResourceError::Write,
                (
                    "the Kafka record limit of {} bytes leaves {room} bytes per chunk beside \
                     the key and headers, less than {}: raise {}",
                    limit.bytes,
                    chunking::MIN_CHUNK_LEN,
                    limit.setting
                )
            );
            gst::FlowError::Error
        })?;
        let timestamp = self.capture_time_ms(buffer);
        let frame = self.frame(buffer)?;
        let size = frame.len();
        gst::trace!(
            CAT,
            imp = self,
            "frame {seq} of {size} bytes as {} chunks",
            plan.count()
        );
        let delivery = target.delivery();
        if target.queue_full == QueueFull::Drop {
            // Every record counted with the most key and headers a chunk has.
            let overhead = headers::record_size(
                target.key.len(),
                0,
                frame_headers_len + CHUNK_HEADERS_MAX_LEN,
            );
            let room = delivery.counters().room_for(
                target.queue_bound,
                plan.count() as u64,
                size as u64,
                overhead as u64,
            );
            if !room {
                self.drop_record(target);
                return Ok(gst::FlowSuccess::Ok);
            }
        }
        let mut waited = false;
        for (chunk, range) in plan.chunks() {
            let first = (chunk.index == 0).then_some(buffer.as_ref());
            let len = range.len();
            let headers = writer.chunk_headers(seq, chunk, first).headers;
            let mut record = target.record(&frame, range, timestamp, Some(headers));
            loop {
                let sent_at = delivery.sending(len);
                let Err(err) = produce::send(&target.producer, &mut record, sent_at) else {
                    break;
                };
                delivery.not_sent(len);
                if err.rdkafka_error_code() != Some(RDKafkaErrorCode::QueueFull) {
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Write,
                        (
                            "cannot produce chunk {} of {} of frame {seq} ({} bytes) to topic \
                             {topic}: {}",
                            chunk.index,
                            chunk.count,
                            size,
                            delivery::describe_delivery_error(&err, len)
                        )
                    );
                    return Err(gst::FlowError::Error);
                }
                if chunk.index == 0 && target.queue_full == QueueFull::Drop {
                    self.drop_record(target);
                    return Ok(gst::FlowSuccess::Ok);
                }
                let holding = match target.queue_full {
                    QueueFull::Block => BLOCKING,
                    QueueFull::Drop => {
                        "holding the rest of a chunked frame back until the brokers take \
                         records again (queue-full=drop drops a frame only before its first chunk)"
                    }
                };
                self.wait_for_room(target, &mut waited, holding)
                    .inspect_err(|_| {
                        if chunk.index == 0 {
                            self.give_back(seq);
                        }
                    })?;
            }
        }
        delivery.chunked(plan.count());
        Ok(gst::FlowSuccess::Ok)
    }

    /// Takes back sequence number `seq` from a frame that gave up before
    /// any of its records was accepted (a flush while it was held back or
    /// waited for room): a gap would count as lost records. Only the
    /// streaming thread takes numbers.
    fn give_back(&self, seq: u64) {
        if let State::Started(started) = &mut *self.state.lock().unwrap()
            && started.seq == seq + 1
        {
            started.seq = seq;
        }
    }

    fn drop_record(&self, target: &Target) {
        let dropped = target.delivery().dropped();
        if let Some(held_back) = target.drop_warnings.allow() {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                (
                    "Kafka producer queue full: {}; dropped {dropped} buffer(s) so far, \
                     {held_back} since the last warning (queue-full=drop)",
                    self.outage(target)
                )
            );
        }
    }

    /// Why the queue is full, for its warnings: how long the brokers have
    /// acknowledged nothing and the client's latest error.
    fn outage(&self, target: &Target) -> String {
        let silent = target.delivery().unacknowledged_for(Instant::now());
        let in_flight = target.delivery().counters().in_flight();
        let reason = target
            .producer
            .context()
            .last_error()
            .map(|e| format!(" (last client error: {e})"))
            .unwrap_or_default();
        format!(
            "{in_flight} record(s) held, no record acknowledged by Kafka for {:.1} s{reason}",
            silent.as_secs_f64()
        )
    }
}

#[glib::object_subclass]
impl ObjectSubclass for KafkaSink {
    const NAME: &'static str = "GstKafkaSink";
    type Type = super::KafkaSink;
    type ParentType = gst_base::BaseSink;
    type Interfaces = (gst::URIHandler,);
}

impl ObjectImpl for KafkaSink {
    fn constructed(&self) {
        self.parent_constructed();
        // Publish as soon as a buffer arrives: the record timestamp already
        // says when it was captured, and waiting for the clock only adds
        // latency (or throttles a file source to real time).
        self.obj().set_sync(false);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut properties = crate::kafka::client_properties();
            properties.extend([
                glib::ParamSpecString::builder("topic")
                    .nick("Topic")
                    .blurb("Kafka topic to publish to (required)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("key")
                    .nick("Key")
                    .blurb("Record key, e.g. a camera name; records of one key stay in one partition (default: the stream id)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("partition")
                    .nick("Partition")
                    .blurb("Partition to write to, or -1 to choose by key")
                    .minimum(-1)
                    .default_value(DEFAULT_PARTITION)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("acks", DEFAULT_ACKS)
                    .nick("Acks")
                    .blurb("Acknowledgement a record waits for")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("enable-idempotence")
                    .nick("Enable idempotence")
                    .blurb("Exactly one copy of each record in the log, in order, despite retries (needs acks=all); \
                            with it, 4 requests in flight unless config sets max.in.flight")
                    .default_value(DEFAULT_ENABLE_IDEMPOTENCE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("compression", DEFAULT_COMPRESSION)
                    .nick("Compression")
                    .blurb("Compression of record batches")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("linger-ms")
                    .nick("Linger")
                    .blurb("Milliseconds to wait for more records to batch (latency vs throughput); \
                            -1: 5 when the stream is held back (upstream not live, idempotence on, \
                            queue-full=block), 20 in the 500 kB batches of its 100-200 kB frames \
                            (frames slower than Kafka then go up to that much later), else 1")
                    .minimum(-1)
                    .maximum(900_000)
                    .default_value(DEFAULT_LINGER_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("message-timeout-ms")
                    .nick("Message timeout")
                    .blurb("Milliseconds librdkafka keeps retrying a record before it is reported as not delivered")
                    .minimum(1)
                    .default_value(DEFAULT_MESSAGE_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-message-bytes")
                    .nick("Max message bytes")
                    .blurb("Largest record the producer sends (librdkafka message.max.bytes); also the limit of topics it creates")
                    .minimum(1000)
                    .maximum(1_000_000_000)
                    .default_value(kafka::DEFAULT_MAX_MESSAGE_BYTES)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("queue-full", DEFAULT_QUEUE_FULL)
                    .nick("Queue full")
                    .blurb("What to do when librdkafka's local queue is full")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("upstream", DEFAULT_UPSTREAM)
                    .nick("Upstream")
                    .blurb("Whether upstream is live, which decides the automatic linger and whether a \
                            stream that is not live is held back at most five records or 2 MB ahead of \
                            the acknowledgements, whichever is more (two to four batches; two of a \
                            larger batch.size set in config), in batches of 500 kB when five or more of \
                            its first frame fit in a 1 MB batch (or one bounded by a lower record limit) \
                            and at most four in 500 kB, in those batches otherwise, unless config sets \
                            batch.size (idempotence on, queue-full=block); auto asks every source \
                            upstream at start")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("create-topic")
                    .nick("Create topic")
                    .blurb("Create the topic at start if it does not exist (otherwise a topic still unknown to the broker after 1 s is an error)")
                    .default_value(DEFAULT_CREATE_TOPIC)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("partitions")
                    .nick("Partitions")
                    .blurb("Partitions of a topic created by create-topic (-1: broker default)")
                    .minimum(-1)
                    .default_value(DEFAULT_PARTITIONS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt::builder("replication-factor")
                    .nick("Replication factor")
                    .blurb("Replication factor of a topic created by create-topic (-1: broker default)")
                    .minimum(-1)
                    .default_value(DEFAULT_REPLICATION_FACTOR)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt64::builder("retention-ms")
                    .nick("Retention")
                    .blurb("retention.ms of a topic created by create-topic (-1: broker default)")
                    .minimum(-1)
                    .default_value(DEFAULT_RETENTION_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("flush-timeout-ms")
                    .nick("Flush timeout")
                    .blurb("Milliseconds EOS waits for every record to be acknowledged before erroring")
                    .default_value(DEFAULT_FLUSH_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("write-headers")
                    .nick("Write headers")
                    .blurb("Add caps, timing, flags and sequence headers to each record (off: bare values, as plain producers write)")
                    .default_value(DEFAULT_WRITE_HEADERS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("chunking", DEFAULT_CHUNKING)
                    .nick("Chunking")
                    .blurb("A frame larger than the Kafka record limit (the smallest of max-message-bytes, the topic's and the brokers' limits): cut into chunk records kafkasrc puts together again (auto), or an error (off)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("uri")
                    .nick("URI")
                    .blurb("kafka://host:port[,host:port…]/topic?property=value&…: sets bootstrap-servers, topic and the properties named in the query; reads back the current settings, secrets left out")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Records and bytes sent and acknowledged, in flight, delivery errors, dropped, records that waited on a full queue, frames sent as chunks and their chunks (counted as records too), last offset, delivery latency; once started, the linger in ms (a double), the batch size in bytes (batch.size, chosen again at the first frame of a stream that runs ahead) and how many value bytes may be unacknowledged, or five records if more (0: no bound, the stream is not held back)")
                    .read_only()
                    .build(),
            ]);
            properties
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        // Sets the other properties: before taking the settings lock.
        if pspec.name() == "uri" {
            uri::set_property(self.obj().upcast_ref(), *CAT, value, &[]);
            return;
        }
        let mut settings = self.settings.lock().unwrap();
        if kafka::set_client_property(&mut settings.client, value, pspec) {
            return;
        }
        match pspec.name() {
            "topic" => settings.topic = value.get().expect("type checked upstream"),
            "key" => settings.key = value.get().expect("type checked upstream"),
            "partition" => settings.partition = value.get().expect("type checked upstream"),
            "acks" => settings.acks = value.get().expect("type checked upstream"),
            "enable-idempotence" => {
                settings.enable_idempotence = value.get().expect("type checked upstream")
            }
            "compression" => settings.compression = value.get().expect("type checked upstream"),
            "linger-ms" => settings.linger_ms = value.get().expect("type checked upstream"),
            "message-timeout-ms" => {
                settings.message_timeout_ms = value.get().expect("type checked upstream")
            }
            "max-message-bytes" => {
                settings.max_message_bytes = value.get().expect("type checked upstream")
            }
            "queue-full" => settings.queue_full = value.get().expect("type checked upstream"),
            "upstream" => settings.upstream = value.get().expect("type checked upstream"),
            "create-topic" => settings.create_topic = value.get().expect("type checked upstream"),
            "partitions" => settings.partitions = value.get().expect("type checked upstream"),
            "replication-factor" => {
                settings.replication_factor = value.get().expect("type checked upstream")
            }
            "retention-ms" => settings.retention_ms = value.get().expect("type checked upstream"),
            "flush-timeout-ms" => {
                settings.flush_timeout_ms = value.get().expect("type checked upstream")
            }
            "write-headers" => settings.write_headers = value.get().expect("type checked upstream"),
            "chunking" => settings.chunking = value.get().expect("type checked upstream"),
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
        let settings = self.settings.lock().unwrap();
        if let Some(value) = kafka::client_property(&settings.client, pspec) {
            return value;
        }
        match pspec.name() {
            "topic" => settings.topic.to_value(),
            "key" => settings.key.to_value(),
            "partition" => settings.partition.to_value(),
            "acks" => settings.acks.to_value(),
            "enable-idempotence" => settings.enable_idempotence.to_value(),
            "compression" => settings.compression.to_value(),
            "linger-ms" => settings.linger_ms.to_value(),
            "message-timeout-ms" => settings.message_timeout_ms.to_value(),
            "max-message-bytes" => settings.max_message_bytes.to_value(),
            "queue-full" => settings.queue_full.to_value(),
            "upstream" => settings.upstream.to_value(),
            "create-topic" => settings.create_topic.to_value(),
            "partitions" => settings.partitions.to_value(),
            "replication-factor" => settings.replication_factor.to_value(),
            "retention-ms" => settings.retention_ms.to_value(),
            "flush-timeout-ms" => settings.flush_timeout_ms.to_value(),
            "write-headers" => settings.write_headers.to_value(),
            "chunking" => settings.chunking.to_value(),
            name => unimplemented!("property {name}"),
        }
    }
}

impl GstObjectImpl for KafkaSink {}

impl ElementImpl for KafkaSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Kafka Sink",
                "Sink/Network",
                "Publishes each buffer as one Apache Kafka record, with caps and timing in record headers",
                "gst-kafka developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &gst::Caps::new_any(),
                )
                .expect("valid pad template"),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl URIHandlerImpl for KafkaSink {
    const URI_TYPE: gst::URIType = gst::URIType::Sink;

    fn protocols() -> &'static [&'static str] {
        &[uri::SCHEME]
    }

    fn uri(&self) -> Option<String> {
        uri::current(self.obj().upcast_ref(), &[])
    }

    fn set_uri(&self, text: &str) -> Result<(), glib::Error> {
        uri::apply(self.obj().upcast_ref(), text, &[])
    }
}

impl BaseSinkImpl for KafkaSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let Some(topic) = settings.topic.clone() else {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ("the topic property is not set")
            ));
        };
        let topic_name = CString::new(topic.as_str()).map_err(|_| {
            gst::error_msg!(
                gst::LibraryError::Settings,
                ("the topic {topic:?} contains a NUL character")
            )
        })?;
        let producer_config = settings.producer_config(self.upstream_live(settings.upstream))?;
        let config = &producer_config.config;
        let runs_ahead = producer_config.runs_ahead;
        let element = self.obj().upcast_ref::<gst::Element>().clone();
        let producer = new_producer(config, &element)?;
        let admin: AdminClient<KafkaContext> = config
            .create_with_context(KafkaContext::new(&element))
            .map_err(kafka::config_error)?;
        let prepared = self.prepare_topic(&settings, &producer, &admin);
        // Dropping an admin client joins its polling thread, which can take
        // 100 ms: not on the state-change thread.
        std::thread::spawn(move || drop(admin));
        let (partitions, limits) = prepared?;
        let record_limit = RecordLimit::smallest(settings.max_message_bytes as usize, &limits);
        if let Some(unread) = limits.unread() {
            // Frames between the assumed and the real limit would be sent
            // whole and refused, or cut needlessly: say which.
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Settings,
                ("cannot read {unread}: assuming Kafka's default record limit of \
                     {KAFKA_DEFAULT_RECORD_LIMIT} bytes for it, so frames over it are sent as \
                     chunks (grant DescribeConfigs on the topic and the cluster to use the real \
                     limit, or lower max-message-bytes to it)")
            );
        }
        let producer = self.bounded_batches(
            producer,
            &producer_config,
            &element,
            (&topic, settings.client.connect_timeout()),
            record_limit,
        )?;
        let stream_id: Arc<str> = format!("{}-{:016x}", element.name(), kafka::random_u64()).into();
        let key = settings
            .key
            .clone()
            .unwrap_or_else(|| stream_id.to_string());
        let run_ahead = runs_ahead.then(|| run_ahead_bound(&producer_config, record_limit));
        let linger_ms = producer_config
            .linger_ms()
            .unwrap_or(f64::from(settings.effective_linger_ms(runs_ahead)));
        gst::info!(
            CAT,
            imp = self,
            "publishing to {topic} ({partitions} partition(s)) at {}, stream id {stream_id}, record limit {} bytes ({}), \
             linger {linger_ms} ms, {}",
            settings.client.bootstrap_servers,
            record_limit.bytes,
            record_limit.setting,
            run_ahead.map_or("queued in librdkafka".to_string(), |ahead| format!(
                "held back beyond {} records or {} bytes unacknowledged",
                ahead.records, ahead.bytes
            ))
        );
        let target = Target {
            producer,
            topic,
            topic_name,
            key,
            partition: (settings.partition >= 0).then_some(settings.partition),
            queue_full: settings.queue_full,
            queue_bound: queue_bound(config),
            run_ahead,
            linger_ms,
            batch_size: producer_config.batch_bytes(record_limit),
            record_limit,
            chunking: settings.chunking,
            flush_timeout: Duration::from_millis(settings.flush_timeout_ms.into()),
            drop_warnings: Throttle::default(),
            block_warnings: Throttle::new(QUEUE_FULL_WARNING_INTERVAL),
        };
        let target = Arc::new(target);
        let broker_watch = brokerwatch::watch(&element, &target, config);
        *self.state.lock().unwrap() = State::Started(Box::new(Started {
            target,
            _broker_watch: broker_watch,
            headers: settings.write_headers.then(|| HeaderWriter::new(stream_id)),
            seq: 0,
            batch_sizing: (runs_ahead && producer_config.batch_size.is_some()).then(|| {
                BatchSizing {
                    config: producer_config.clone(),
                    connect_timeout: settings.client.connect_timeout(),
                }
            }),
        }));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let State::Started(started) = std::mem::take(&mut *self.state.lock().unwrap()) else {
            return Ok(());
        };
        // Give in-flight records a short chance, then account for the rest.
        let _ = started.target.producer.flush(STOP_FLUSH_TIMEOUT);
        let counters = started.target.delivery().counters();
        let lost = counters.unaccounted();
        if lost > 0 {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                ("stopped with {lost} record(s) not delivered to Kafka")
            );
        }
        gst::info!(
            CAT,
            imp = self,
            "stopped after {} acknowledged records",
            counters.records_acked
        );
        // Everything is accounted for; dropping the producer joins its
        // polling thread (up to 100 ms), which NULL need not wait for.
        std::thread::spawn(move || drop(started));
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let mut state = self.state.lock().unwrap();
        let State::Started(started) = &mut *state else {
            return Ok(());
        };
        let Some(writer) = &mut started.headers else {
            return Ok(());
        };
        if let Err(CapsTooLong(len)) = writer.set_caps(caps) {
            drop(state);
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                (
                    "caps of {len} bytes are longer than the {} bytes a gst-caps record header \
                     may hold: kafkasrc would refuse every record (leave out the large \
                     streamheader or codec_data upstream, or set write-headers=false)",
                    wireformat::MAX_TEXT_LEN
                )
            );
            return Err(gst::loggable_error!(
                CAT,
                "caps of {len} bytes are too long"
            ));
        }
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.send(buffer)
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view()
            && let Err(err) = self.flush_for_eos()
        {
            self.post_error_message(err);
            return false;
        }
        self.parent_event(event)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn requests_in_flight(settings: &Settings) -> Option<String> {
        let config = settings.producer_config(true).unwrap().config;
        kafka::setting(&config, "max.in.flight").map(str::to_owned)
    }

    /// A record limit set by the topic.
    fn topic_limit(bytes: usize) -> RecordLimit {
        RecordLimit {
            bytes,
            setting: "the topic's max.message.bytes",
        }
    }

    fn with_config(enable_idempotence: bool, config: &[(&str, &str)]) -> Settings {
        let mut structure = gst::Structure::new_empty("config");
        for (key, value) in config {
            structure.set(*key, *value);
        }
        Settings {
            enable_idempotence,
            client: ClientSettings {
                config: Some(structure),
                ..ClientSettings::default()
            },
            ..Settings::default()
        }
    }

    #[test]
    fn an_idempotent_producer_keeps_requests_in_flight_below_the_idempotence_window() {
        gst::init().unwrap();
        assert_eq!(
            requests_in_flight(&Settings::default()).as_deref(),
            Some("4")
        );
        // Idempotence as librdkafka will have it, whichever way it was set.
        assert_eq!(requests_in_flight(&with_config(false, &[])), None);
        assert_eq!(
            requests_in_flight(&with_config(false, &[("enable.idempotence", "true")])).as_deref(),
            Some("4")
        );
        assert_eq!(
            requests_in_flight(&with_config(true, &[("enable.idempotence", "false")])),
            None
        );
        // librdkafka's other spellings of true, and a transactional id.
        for turned_on in [
            ("enable.idempotence", "1"),
            ("enable.idempotence", "True"),
            ("transactional.id", "cam-1"),
        ] {
            assert_eq!(
                requests_in_flight(&with_config(false, &[turned_on])).as_deref(),
                Some("4"),
                "{turned_on:?}"
            );
        }
        // The user's choice, under either name, stands.
        for key in ["max.in.flight", "max.in.flight.requests.per.connection"] {
            assert_eq!(
                requests_in_flight(&with_config(true, &[(key, "5")])).as_deref(),
                Some("5"),
                "{key}"
            );
        }
    }

    #[test]
    fn only_an_idempotent_blocking_stream_that_is_not_live_runs_ahead_and_lingers_5_ms() {
        gst::init().unwrap();
        let run = |settings: &Settings, live| {
            let config = settings.producer_config(live).unwrap();
            (
                config.runs_ahead,
                kafka::setting(&config.config, "linger.ms").map(str::to_owned),
            )
        };
        let five = Some("5".to_owned());
        let one = Some("1".to_owned());
        assert_eq!(run(&Settings::default(), false), (true, five));
        assert_eq!(run(&Settings::default(), true), (false, one.clone()));
        assert_eq!(run(&with_config(false, &[]), false), (false, one.clone()));
        let off_by_config = with_config(true, &[("enable.idempotence", "false")]);
        assert_eq!(run(&off_by_config, false), (false, one.clone()));
        let dropping = Settings {
            queue_full: QueueFull::Drop,
            ..Settings::default()
        };
        assert_eq!(run(&dropping, false), (false, one));
        // A linger set stays, whether by the property or, under either
        // name, by config.
        let set = Settings {
            linger_ms: 0,
            ..Settings::default()
        };
        assert_eq!(run(&set, false), (true, Some("0".to_owned())));
        for key in ["linger.ms", "queue.buffering.max.ms"] {
            let configured = with_config(true, &[(key, "20")]);
            assert_eq!(
                run(&configured, false),
                (true, Some("20".to_owned())),
                "{key}"
            );
        }
    }

    #[test]
    fn only_frames_of_100_to_200_kb_that_run_ahead_are_sent_in_half_megabyte_batches() {
        gst::init().unwrap();
        let limit = topic_limit(KAFKA_DEFAULT_RECORD_LIMIT);
        let resized = |settings: &Settings, live, frame_size, limit| {
            let config = settings.producer_config(live).unwrap();
            config.batch_size_for_frames(frame_size, limit)
        };
        let default = Settings::default();
        // Made with librdkafka's 1 MB batches, not set in the config.
        let config = default.producer_config(false).unwrap();
        assert_eq!(config.batch_size, Some(1_000_000));
        assert_eq!(kafka::setting(&config.config, "batch.size"), None);
        // Five frames or more in 1 MB, at most four in 500 kB.
        for (frame_size, batch_size) in [
            (25_000, None),
            (100_000, None),
            (100_001, Some(500_000)),
            (157_000, Some(500_000)),
            (200_000, Some(500_000)),
            (200_001, None),
            (338_000, None),
            (3_000_000, None),
        ] {
            assert_eq!(
                resized(&default, false, frame_size, limit),
                batch_size,
                "{frame_size}"
            );
        }
        // Live, or the user's batch.size: as made.
        assert_eq!(resized(&default, true, 157_000, limit), None);
        let chosen = with_config(true, &[("batch.size", "1000000")]);
        assert_eq!(resized(&chosen, false, 157_000, limit), None);
        // Batches bounded to a 700 kB record limit already hold four.
        assert_eq!(
            resized(&default, false, 157_000, topic_limit(700_000)),
            None
        );
        assert_eq!(
            resized(&default, false, 120_000, topic_limit(700_000)),
            Some(500_000)
        );
        // The producer made again has them, lingers 20 ms unless the user
        // chose, and runs ahead by four of them.
        let sized = config.for_mid_size_frames();
        assert_eq!(kafka::setting(&sized.config, "batch.size"), Some("500000"));
        assert_eq!(sized.linger_ms(), Some(20.0));
        assert_eq!(run_ahead_bound(&sized, limit).bytes, 2_000_000);
        assert_eq!(config.linger_ms(), Some(5.0));
        let lingering = |settings: &Settings| {
            settings
                .producer_config(false)
                .unwrap()
                .for_mid_size_frames()
                .linger_ms()
        };
        let by_property = Settings {
            linger_ms: 0,
            ..Settings::default()
        };
        assert_eq!(lingering(&by_property), Some(0.0));
        assert_eq!(
            lingering(&with_config(true, &[("linger.ms", "3")])),
            Some(3.0)
        );
    }

    #[test]
    fn a_record_limit_below_the_chosen_batch_size_bounds_the_batches() {
        gst::init().unwrap();
        let bounded = |settings: &Settings, live, bytes| {
            let config = settings.producer_config(live).unwrap();
            config.bounded_batch_size(topic_limit(bytes))
        };
        let default = Settings::default();
        // librdkafka's 1 MB, running ahead or live.
        for live in [false, true] {
            assert_eq!(bounded(&default, live, 1_048_588), None);
            assert_eq!(bounded(&default, live, 700_000), Some(700_000));
            assert_eq!(bounded(&default, live, 100_000), Some(100_000));
        }
        // The user's batch.size stays, whatever the limit.
        let chosen = with_config(true, &[("batch.size", "300000")]);
        assert_eq!(bounded(&chosen, false, 100_000), None);
        assert_eq!(bounded(&chosen, true, 100_000), None);
    }

    #[test]
    fn a_stream_runs_ahead_by_two_to_four_batches_up_to_2_mb_or_five_records() {
        gst::init().unwrap();
        let bound = |config: &[(&str, &str)], limit| {
            let config = with_config(true, config).producer_config(false).unwrap();
            run_ahead_bound(&config, topic_limit(limit))
        };
        // Two of librdkafka's 1 MB batches.
        assert_eq!(
            bound(&[], KAFKA_DEFAULT_RECORD_LIMIT),
            RunAhead {
                bytes: 2_000_000,
                records: 5
            }
        );
        for (config, limit, bytes) in [
            // Batches bounded by a small record limit (bounded_batches).
            (&[][..], 100_000, 400_000),
            // Four batches up to 2 MB: under a 700 kB limit, 2 MB.
            (&[], 700_000, 2_000_000),
            // The user's batch.size, which the sink leaves as it is.
            (&[("batch.size", "300000")], 100_000, 1_200_000),
            // Two batches at least, over 2 MB.
            (&[("batch.size", "2000000")], 16 << 20, 4_000_000),
        ] {
            assert_eq!(bound(config, limit).bytes, bytes, "{config:?}, {limit}");
        }
    }

    #[test]
    fn a_limit_the_broker_does_not_tell_is_taken_as_kafkas_default() {
        let told = BrokerLimits {
            topic: Some(2_000_000),
            broker: Some(500_000),
            error: None,
        };
        assert_eq!(told.unread(), None);
        assert_eq!(
            RecordLimit::smallest(16 << 20, &told),
            RecordLimit {
                bytes: 500_000,
                setting: "the brokers' message.max.bytes"
            }
        );
        // DescribeConfigs refused: not the 16 MiB of max-message-bytes.
        let refused = BrokerLimits {
            topic: None,
            broker: None,
            error: Some("DescribeConfigs: Broker: Cluster authorization failed".into()),
        };
        let limit = RecordLimit::smallest(16 << 20, &refused);
        assert_eq!(limit.bytes, KAFKA_DEFAULT_RECORD_LIMIT);
        assert!(limit.setting.contains("could not be read"), "{limit:?}");
        assert_eq!(
            refused.unread().as_deref(),
            Some(
                "the topic's max.message.bytes and the brokers' message.max.bytes \
                 (DescribeConfigs: Broker: Cluster authorization failed)"
            )
        );
        // A smaller limit that was read still wins; so does the property.
        let topic_only = BrokerLimits {
            topic: Some(100_000),
            ..BrokerLimits::default()
        };
        assert_eq!(RecordLimit::smallest(16 << 20, &topic_only).bytes, 100_000);
        assert_eq!(
            topic_only.unread().as_deref(),
            Some("the brokers' message.max.bytes (no answer to DescribeConfigs)")
        );
        assert_eq!(RecordLimit::smallest(50_000, &refused).bytes, 50_000);
    }
}

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
 * ## Example launch lines
 * |[
 * gst-launch-1.0 -e videotestsrc is-live=true ! jpegenc ! kafkasink topic=cam1
 * gst-launch-1.0 -e v4l2src ! image/jpeg ! kafkasink topic=cams key=door create-topic=true
 * gst-launch-1.0 -e videotestsrc ! x264enc tune=zerolatency ! h264parse ! kafkasink topic=h264 \
 *     bootstrap-servers=kafka1:9092,kafka2:9092 \
 *     config="config,security.protocol=SASL_SSL,sasl.mechanism=PLAIN,sasl.username=u,sasl.password=p"
 * ]|
 *
 * ## Messages
 * `kafka-statistics` (element message, when `statistics-interval-ms` > 0):
 * field `json` holds librdkafka's statistics document.
 */
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::Notify;

use super::{Acks, Compression, QueueFull};
use crate::capturetime;
use crate::kafka::{self, ClientHooks, ClientSettings, HooksContext, TopicError};
use crate::runtime::{self, Canceller};
use crate::wireformat;

const DEFAULT_ACKS: Acks = Acks::All;
const DEFAULT_ENABLE_IDEMPOTENCE: bool = true;
const DEFAULT_COMPRESSION: Compression = Compression::None;
const DEFAULT_LINGER_MS: u32 = 1;
const DEFAULT_MESSAGE_TIMEOUT_MS: u32 = 30_000;
const DEFAULT_QUEUE_FULL: QueueFull = QueueFull::Block;
const DEFAULT_CREATE_TOPIC: bool = false;
const DEFAULT_PARTITIONS: i32 = 1;
const DEFAULT_REPLICATION_FACTOR: i32 = -1;
const DEFAULT_RETENTION_MS: i64 = -1;
const DEFAULT_FLUSH_TIMEOUT_MS: u32 = 30_000;
const DEFAULT_WRITE_HEADERS: bool = true;
const DEFAULT_PARTITION: i32 = -1;

/// How often a thread waiting for deliveries re-checks, in case a wake-up
/// was missed.
const DELIVERY_POLL: Duration = Duration::from_millis(100);
/// How long `stop()` lets in-flight records finish before giving up on
/// them (and reporting them), so that NULL stays prompt.
const STOP_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
struct Settings {
    client: ClientSettings,
    topic: Option<String>,
    key: Option<String>,
    partition: i32,
    acks: Acks,
    enable_idempotence: bool,
    compression: Compression,
    linger_ms: u32,
    message_timeout_ms: u32,
    max_message_bytes: u32,
    queue_full: QueueFull,
    create_topic: bool,
    partitions: i32,
    replication_factor: i32,
    retention_ms: i64,
    flush_timeout_ms: u32,
    write_headers: bool,
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
            create_topic: DEFAULT_CREATE_TOPIC,
            partitions: DEFAULT_PARTITIONS,
            replication_factor: DEFAULT_REPLICATION_FACTOR,
            retention_ms: DEFAULT_RETENTION_MS,
            flush_timeout_ms: DEFAULT_FLUSH_TIMEOUT_MS,
            write_headers: DEFAULT_WRITE_HEADERS,
        }
    }
}

impl Settings {
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
            ("linger.ms", self.linger_ms.to_string()),
            ("message.timeout.ms", self.message_timeout_ms.to_string()),
            ("message.max.bytes", self.max_message_bytes.to_string()),
            // The same key lands in the same partition as with Java clients.
            ("partitioner", "murmur2_random".into()),
            // A typo in `topic` must not create a topic with broker defaults.
            ("allow.auto.create.topics", "false".into()),
        ]
    }
}

/// Delivery bookkeeping shared with librdkafka's delivery callback thread.
#[derive(Debug, Default)]
struct Delivery {
    counters: Mutex<Counters>,
    /// Woken on every finished delivery: room in the queue, progress of a flush.
    progress: Notify,
}

#[derive(Debug, Default, Clone)]
struct Counters {
    records_sent: u64,
    bytes_sent: u64,
    records_acked: u64,
    bytes_acked: u64,
    delivery_errors: u64,
    dropped: u64,
    last_partition: i32,
    last_offset: i64,
    latency_last_us: u64,
    latency_max_us: u64,
    latency_total_us: u64,
    first_error: Option<String>,
    reported_errors: u64,
}

impl Counters {
    fn in_flight(&self) -> u64 {
        self.records_sent - self.records_acked - self.delivery_errors
    }

    /// A new delivery failure not yet raised as an element error.
    fn unreported_failure(&mut self) -> Option<(u64, String)> {
        if self.delivery_errors == self.reported_errors {
            return None;
        }
        self.reported_errors = self.delivery_errors;
        Some((
            self.delivery_errors,
            self.first_error.clone().unwrap_or_default(),
        ))
    }
}

struct SinkContext {
    hooks: ClientHooks,
    delivery: Arc<Delivery>,
    epoch: Instant,
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.hooks.log(level, facility, message);
    }

    fn stats_raw(&self, json: &[u8]) {
        self.hooks.statistics(json);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.hooks.error(error, reason);
    }
}

impl ProducerContext for SinkContext {
    /// Microseconds since `epoch` when the record was handed to librdkafka.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_us: usize) {
        let latency_us =
            (self.epoch.elapsed().as_micros() as u64).saturating_sub(sent_at_us as u64);
        let mut counters = self.delivery.counters.lock().unwrap();
        match result {
            Ok(message) => {
                counters.records_acked += 1;
                counters.bytes_acked += message.payload_len() as u64;
                counters.last_partition = message.partition();
                counters.last_offset = message.offset();
                counters.latency_last_us = latency_us;
                counters.latency_max_us = counters.latency_max_us.max(latency_us);
                counters.latency_total_us += latency_us;
            }
            Err((error, message)) => {
                counters.delivery_errors += 1;
                if counters.first_error.is_none() {
                    counters.first_error =
                        Some(describe_delivery_error(error, message.payload_len()));
                }
            }
        }
        drop(counters);
        self.delivery.progress.notify_one();
    }
}

fn describe_delivery_error(error: &KafkaError, size: usize) -> String {
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

struct Started {
    producer: ThreadedProducer<SinkContext>,
    delivery: Arc<Delivery>,
    settings: Settings,
    topic: Arc<str>,
    key: Arc<str>,
    stream_id: Arc<str>,
    seq: u64,
    caps_text: Option<Arc<str>>,
    /// The largest record value the producer and the topic accept, and
    /// which setting sets it.
    record_limit: (usize, &'static str),
    epoch: Instant,
    last_drop_warning: Option<Instant>,
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
                let buffer_clock = (base_time + running_time).nseconds() as i128;
                let age_ns = clock.time().nseconds() as i128 - buffer_clock;
                now - (age_ns / 1_000_000) as i64
            }
            _ => now,
        }
    }

    fn headers(&self, started: &Started, seq: u64, buffer: &gst::BufferRef) -> OwnedHeaders {
        let mut number = [0u8; 20];
        let mut headers = OwnedHeaders::new_with_capacity(8)
            .insert(Header {
                key: wireformat::VERSION_KEY,
                value: Some(wireformat::VERSION),
            })
            .insert(Header {
                key: wireformat::STREAM_ID_KEY,
                value: Some(started.stream_id.as_ref()),
            })
            .insert(Header {
                key: wireformat::SEQ_KEY,
                value: Some(wireformat::encode_number(seq, &mut number)),
            });
        if let Some(caps) = &started.caps_text {
            headers = headers.insert(Header {
                key: wireformat::CAPS_KEY,
                value: Some(caps.as_ref()),
            });
        }
        for (key, time) in [
            (wireformat::PTS_KEY, buffer.pts()),
            (wireformat::DTS_KEY, buffer.dts()),
            (wireformat::DURATION_KEY, buffer.duration()),
        ] {
            if let Some(time) = time {
                headers = headers.insert(Header {
                    key,
                    value: Some(wireformat::encode_number(time.nseconds(), &mut number)),
                });
            }
        }
        if let Some(flags) = wireformat::encode_flags(buffer.flags()) {
            headers = headers.insert(Header {
                key: wireformat::FLAGS_KEY,
                value: Some(flags.as_str()),
            });
        }
        headers
    }

    /// Raises the first delivery failure not yet reported.
    fn check_delivery(&self, delivery: &Delivery, topic: &str) -> Result<(), gst::FlowError> {
        let failure = delivery.counters.lock().unwrap().unreported_failure();
        match failure {
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
    /// failed, for at most `timeout`. Returns how many are still in flight.
    fn wait_delivered(
        &self,
        delivery: &Delivery,
        timeout: Duration,
    ) -> Result<u64, runtime::Cancelled> {
        let deadline = Instant::now() + timeout;
        loop {
            let in_flight = delivery.counters.lock().unwrap().in_flight();
            let now = Instant::now();
            if in_flight == 0 || now >= deadline {
                return Ok(in_flight);
            }
            let slice = (deadline - now).min(DELIVERY_POLL);
            runtime::wait(&self.canceller, async {
                let _ = tokio::time::timeout(slice, delivery.progress.notified()).await;
            })?;
        }
    }

    /// Handles EOS: every record acknowledged before EOS goes downstream.
    fn flush_for_eos(&self) -> Result<(), gst::ErrorMessage> {
        let (delivery, topic, timeout) = match &*self.state.lock().unwrap() {
            State::Started(started) => (
                started.delivery.clone(),
                started.topic.clone(),
                Duration::from_millis(started.settings.flush_timeout_ms.into()),
            ),
            State::Stopped => return Ok(()),
        };
        gst::debug!(
            CAT,
            imp = self,
            "EOS: waiting for every record to be acknowledged"
        );
        let in_flight = self.wait_delivered(&delivery, timeout).map_err(|_| {
            gst::error_msg!(
                gst::ResourceError::Write,
                ("flushing while waiting for deliveries")
            )
        })?;
        let mut counters = delivery.counters.lock().unwrap();
        if let Some((count, reason)) = counters.unreported_failure() {
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
            counters.records_acked
        );
        Ok(())
    }

    fn stats(&self) -> gst::Structure {
        let counters = match &*self.state.lock().unwrap() {
            State::Started(started) => started.delivery.counters.lock().unwrap().clone(),
            State::Stopped => Counters::default(),
        };
        let latency_avg_us = counters
            .latency_total_us
            .checked_div(counters.records_acked)
            .unwrap_or(0);
        gst::Structure::builder("kafkasink-stats")
            .field("records-sent", counters.records_sent)
            .field("bytes-sent", counters.bytes_sent)
            .field("records-acked", counters.records_acked)
            .field("bytes-acked", counters.bytes_acked)
            .field("in-flight", counters.in_flight())
            .field("delivery-errors", counters.delivery_errors)
            .field("dropped", counters.dropped)
            .field("last-partition", counters.last_partition)
            .field("last-offset", counters.last_offset)
            .field("delivery-latency-last-us", counters.latency_last_us)
            .field("delivery-latency-avg-us", latency_avg_us)
            .field("delivery-latency-max-us", counters.latency_max_us)
            .build()
    }

    /// Makes sure the topic exists (creating it when asked) and returns the
    /// record size limit it imposes, if the broker tells.
    fn prepare_topic(
        &self,
        settings: &Settings,
        producer: &ThreadedProducer<SinkContext>,
        admin: &AdminClient<HooksContext>,
    ) -> Result<(usize, Option<usize>), gst::ErrorMessage> {
        let topic = settings.topic.as_deref().unwrap_or_default();
        let client = &settings.client;
        let timeout = client.connect_timeout();
        let partitions = match kafka::describe_topic(producer.client(), topic, timeout) {
            Ok(info) => info.partitions,
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
                let detail = producer.context().hooks.last_error();
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
        let limit = self.topic_record_limit(admin, topic, timeout);
        // An idempotent producer asks for its producer id after a metadata
        // response, from a broker that is up; the first response came from
        // the bootstrap connection, when none was. Asking again now that
        // the partition leaders are connected spares the first records
        // librdkafka's 500 ms retry.
        let _ = producer.client().fetch_metadata(Some(topic), timeout);
        Ok((partitions, limit))
    }

    /// A new topic takes a moment to show in the brokers' metadata.
    fn await_created_topic(
        &self,
        producer: &ThreadedProducer<SinkContext>,
        topic: &str,
        timeout: Duration,
    ) -> Result<usize, gst::ErrorMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            match kafka::describe_topic(producer.client(), topic, timeout) {
                Ok(info) => return Ok(info.partitions),
                Err(TopicError::Missing) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(err) => {
                    return Err(gst::error_msg!(
                        gst::ResourceError::NotFound,
                        ("topic {topic} was created but cannot be described: {err:?}")
                    ));
                }
            }
        }
    }

    fn create_topic(
        &self,
        settings: &Settings,
        admin: &AdminClient<HooksContext>,
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

    /// The topic's `max.message.bytes`, or `None` if the broker does not say
    /// (e.g. no permission to describe configs): the broker still enforces it.
    fn topic_record_limit(
        &self,
        admin: &AdminClient<HooksContext>,
        topic: &str,
        timeout: Duration,
    ) -> Option<usize> {
        let options = AdminOptions::new().request_timeout(Some(timeout));
        let resource = ResourceSpecifier::Topic(topic);
        let result = runtime::wait(&self.canceller, async {
            tokio::time::timeout(timeout, admin.describe_configs([&resource], &options)).await
        });
        let limit =
            match result {
                Ok(Ok(Ok(resources))) => resources
                    .into_iter()
                    .next()
                    .and_then(|r| r.ok())
                    .and_then(|r| {
                        r.entries
                            .iter()
                            .find(|e| e.name == "max.message.bytes")
                            .and_then(|e| e.value.as_deref()?.parse().ok())
                    }),
                _ => None,
            };
        gst::debug!(
            CAT,
            imp = self,
            "topic {topic} max.message.bytes: {limit:?}"
        );
        limit
    }

    fn send(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (producer, delivery, record_limit, topic, key, partition, headers, queue_full, epoch) = {
            let mut state = self.state.lock().unwrap();
            let State::Started(started) = &mut *state else {
                gst::element_imp_error!(self, gst::CoreError::Failed, ("not started"));
                return Err(gst::FlowError::Error);
            };
            let seq = started.seq;
            started.seq += 1;
            let headers = started
                .settings
                .write_headers
                .then(|| self.headers(started, seq, buffer));
            (
                started.producer.clone(),
                started.delivery.clone(),
                started.record_limit,
                started.topic.clone(),
                started.key.clone(),
                started.settings.partition,
                headers,
                started.settings.queue_full,
                started.epoch,
            )
        };
        self.check_delivery(&delivery, &topic)?;

        let size = buffer.size();
        if size > record_limit.0 {
            gst::element_imp_error!(
                self,
                gst::ResourceError::Write,
                (
                    "frame of {size} bytes is larger than the Kafka record limit of {} bytes: raise {}",
                    record_limit.0,
                    record_limit.1
                )
            );
            return Err(gst::FlowError::Error);
        }

        let timestamp = self.capture_time_ms(buffer);
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::ResourceError::Read, ("cannot map buffer"));
            gst::FlowError::Error
        })?;
        let mut record = BaseRecord::with_opaque_to(&topic, 0usize)
            .payload(map.as_slice())
            .key(key.as_bytes())
            .timestamp(timestamp);
        if partition >= 0 {
            record = record.partition(partition);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        loop {
            record.delivery_opaque = epoch.elapsed().as_micros() as usize;
            // Counted before sending: the delivery callback may run first.
            {
                let mut counters = delivery.counters.lock().unwrap();
                counters.records_sent += 1;
                counters.bytes_sent += size as u64;
            }
            match producer.send(record) {
                Ok(()) => return Ok(gst::FlowSuccess::Ok),
                Err((err, returned)) => {
                    let mut counters = delivery.counters.lock().unwrap();
                    counters.records_sent -= 1;
                    counters.bytes_sent -= size as u64;
                    drop(counters);
                    record = returned;
                    if err.rdkafka_error_code() != Some(RDKafkaErrorCode::QueueFull) {
                        gst::element_imp_error!(
                            self,
                            gst::ResourceError::Write,
                            (
                                "cannot produce a record of {size} bytes to topic {topic}: {}",
                                describe_delivery_error(&err, size)
                            )
                        );
                        return Err(gst::FlowError::Error);
                    }
                }
            }
            match queue_full {
                QueueFull::Drop => {
                    self.drop_record(&delivery);
                    return Ok(gst::FlowSuccess::Ok);
                }
                QueueFull::Block => {
                    gst::trace!(CAT, imp = self, "queue full, waiting for deliveries");
                    runtime::wait(&self.canceller, async {
                        let _ =
                            tokio::time::timeout(DELIVERY_POLL, delivery.progress.notified()).await;
                    })
                    .map_err(|_| gst::FlowError::Flushing)?;
                    self.check_delivery(&delivery, &topic)?;
                }
            }
        }
    }

    fn drop_record(&self, delivery: &Delivery) {
        let dropped = {
            let mut counters = delivery.counters.lock().unwrap();
            counters.dropped += 1;
            counters.dropped
        };
        let mut state = self.state.lock().unwrap();
        if let State::Started(started) = &mut *state
            && started
                .last_drop_warning
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            started.last_drop_warning = Some(Instant::now());
            drop(state);
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                ("Kafka producer queue full: dropped {dropped} buffer(s) so far (queue-full=drop)")
            );
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for KafkaSink {
    const NAME: &'static str = "GstKafkaSink";
    type Type = super::KafkaSink;
    type ParentType = gst_base::BaseSink;
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
                    .blurb("Exactly one copy of each record in the log, in order, despite retries (needs acks=all)")
                    .default_value(DEFAULT_ENABLE_IDEMPOTENCE)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("compression", DEFAULT_COMPRESSION)
                    .nick("Compression")
                    .blurb("Compression of record batches")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("linger-ms")
                    .nick("Linger")
                    .blurb("Milliseconds to wait for more records to batch (latency vs throughput)")
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
                glib::ParamSpecBoolean::builder("create-topic")
                    .nick("Create topic")
                    .blurb("Create the topic at start if it does not exist")
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
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Records and bytes sent and acknowledged, in flight, delivery errors, dropped, last offset, delivery latency")
                    .read_only()
                    .build(),
            ]);
            properties
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
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
            name => unimplemented!("property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "stats" {
            return self.stats().to_value();
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
            "create-topic" => settings.create_topic.to_value(),
            "partitions" => settings.partitions.to_value(),
            "replication-factor" => settings.replication_factor.to_value(),
            "retention-ms" => settings.retention_ms.to_value(),
            "flush-timeout-ms" => settings.flush_timeout_ms.to_value(),
            "write-headers" => settings.write_headers.to_value(),
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

impl BaseSinkImpl for KafkaSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let Some(topic) = settings.topic.clone() else {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ("the topic property is not set")
            ));
        };
        let config = settings
            .client
            .client_config(&settings.librdkafka_defaults())?;
        let element = self.obj().upcast_ref::<gst::Element>().clone();
        let delivery = Arc::new(Delivery::default());
        let epoch = Instant::now();
        let context = SinkContext {
            hooks: ClientHooks::new(&element),
            delivery: delivery.clone(),
            epoch,
        };
        let producer: ThreadedProducer<SinkContext> = config
            .create_with_context(context)
            .map_err(kafka::config_error)?;
        let admin: AdminClient<HooksContext> = config
            .create_with_context(HooksContext(ClientHooks::new(&element)))
            .map_err(kafka::config_error)?;
        let prepared = self.prepare_topic(&settings, &producer, &admin);
        // Dropping an admin client joins its polling thread, which can take
        // 100 ms: not on the state-change thread.
        std::thread::spawn(move || drop(admin));
        let (partitions, topic_limit) = prepared?;

        let producer_limit = settings.max_message_bytes as usize;
        let record_limit = match topic_limit {
            Some(topic_limit) if topic_limit < producer_limit => (
                topic_limit,
                "the topic's max.message.bytes (and the broker's message.max.bytes)",
            ),
            _ => (producer_limit, "the max-message-bytes property"),
        };
        let stream_id: Arc<str> = format!("{}-{:016x}", element.name(), kafka::random_u64()).into();
        let key = settings
            .key
            .clone()
            .map(Arc::from)
            .unwrap_or_else(|| stream_id.clone());
        gst::info!(
            CAT,
            imp = self,
            "publishing to {topic} ({partitions} partition(s)) at {}, stream id {stream_id}, record limit {} bytes",
            settings.client.bootstrap_servers,
            record_limit.0
        );
        *self.state.lock().unwrap() = State::Started(Box::new(Started {
            producer,
            delivery,
            topic: topic.into(),
            settings,
            key,
            stream_id,
            seq: 0,
            caps_text: None,
            record_limit,
            epoch,
            last_drop_warning: None,
        }));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let State::Started(started) = std::mem::take(&mut *self.state.lock().unwrap()) else {
            return Ok(());
        };
        // Give in-flight records a short chance, then account for the rest.
        let _ = started.producer.flush(STOP_FLUSH_TIMEOUT);
        let counters = started.delivery.counters.lock().unwrap().clone();
        let lost = counters.in_flight() + counters.delivery_errors - counters.reported_errors;
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
        if let State::Started(started) = &mut *self.state.lock().unwrap() {
            started.caps_text = Some(caps.to_string().into());
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

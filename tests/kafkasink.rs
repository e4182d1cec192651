// SPDX-License-Identifier: MPL-2.0

//! kafkasink against the real Apache Kafka broker, checked with an
//! independent rdkafka consumer.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

const TIMEOUT: Duration = Duration::from_secs(60);

/// The buffers and caps an appsink named `reference` saw.
fn collect(pipeline: &gst::Pipeline) -> Arc<Mutex<Vec<(gst::Buffer, gst::Caps)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let appsink = element::<gst_app::AppSink>(pipeline, "reference");
    let sink_seen = seen.clone();
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                sink_seen
                    .lock()
                    .unwrap()
                    .push((sample.buffer_owned().unwrap(), sample.caps_owned().unwrap()));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    seen
}

fn sink_stats(pipeline: &gst::Pipeline) -> gst::Structure {
    pipeline.by_name("sink").unwrap().property("stats")
}

#[test]
fn round_trip_keeps_bytes_order_caps_and_timing() {
    const N: usize = 30;
    let topic = unique_topic("sink-round-trip");
    let pipeline = launch(&format!(
        "videotestsrc num-buffers={N} is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! jpegenc ! tee name=t \
         t. ! queue ! kafkasink name=sink topic={topic} bootstrap-servers={} create-topic=true \
         t. ! queue ! appsink name=reference sync=false",
        bootstrap()
    ));
    let seen = collect(&pipeline);
    let wall_start = unix_now_ms();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let end = wait_end(&bus, TIMEOUT);
    let wall_end = unix_now_ms();
    assert!(matches!(end, End::Eos), "{end:?}");
    // EOS was let through only after every record was acknowledged: they
    // are all readable now, without waiting.
    assert_eq!(record_count(&topic), N as i64);
    let stats = sink_stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();

    let records = read_topic(&topic);
    let seen = seen.lock().unwrap();
    assert_eq!(records.len(), N);
    assert_eq!(seen.len(), N);
    let stream_id = records[0].header("gst-stream-id").unwrap().to_string();
    for (i, (record, (buffer, caps))) in records.iter().zip(seen.iter()).enumerate() {
        assert_eq!(record.partition, 0);
        assert_eq!(record.offset, i as i64);
        assert_eq!(
            record.value,
            buffer.map_readable().unwrap().as_slice(),
            "record {i}"
        );
        assert_eq!(record.key.as_deref(), Some(stream_id.as_bytes()));
        assert_eq!(record.header("gst-version"), Some("1"));
        assert_eq!(record.header("gst-stream-id"), Some(stream_id.as_str()));
        assert_eq!(record.header("gst-seq"), Some(i.to_string().as_str()));
        let record_caps: gst::Caps = record.header("gst-caps").unwrap().parse().unwrap();
        assert_eq!(&record_caps, caps);
        assert_eq!(
            record.header("gst-pts").map(|v| v.parse::<u64>().unwrap()),
            buffer.pts().map(|t| t.nseconds())
        );
        assert_eq!(
            record
                .header("gst-duration")
                .map(|v| v.parse::<u64>().unwrap()),
            buffer.duration().map(|t| t.nseconds())
        );
        // The capture time of a live source: within a frame of the wall clock.
        let timestamp = record.timestamp_ms.unwrap();
        assert!(
            timestamp >= wall_start - 34 && timestamp <= wall_end + 34,
            "record {i} timestamp {timestamp} outside [{wall_start}, {wall_end}]"
        );
        assert!(jpeg_like(&record.value));
    }
    assert_eq!(records[0].header("gst-flags"), Some("discont,marker"));

    let bytes: usize = records.iter().map(|r| r.value.len()).sum();
    assert_eq!(stats.get::<u64>("records-sent").unwrap(), N as u64);
    assert_eq!(stats.get::<u64>("records-acked").unwrap(), N as u64);
    assert_eq!(stats.get::<u64>("bytes-acked").unwrap(), bytes as u64);
    assert_eq!(stats.get::<u64>("in-flight").unwrap(), 0);
    assert_eq!(stats.get::<u64>("delivery-errors").unwrap(), 0);
    assert_eq!(stats.get::<i64>("last-offset").unwrap(), N as i64 - 1);
}

fn jpeg_like(data: &[u8]) -> bool {
    data.starts_with(&[0xff, 0xd8]) && data.ends_with(&[0xff, 0xd9])
}

/// EOS sends the last batch at once instead of after its linger, here 200 s
/// (below `message-timeout-ms`, as librdkafka requires): the records are
/// acknowledged and EOS comes within the test's 60 s.
#[test]
fn eos_does_not_wait_out_the_linger() {
    let topic = unique_topic("sink-eos-linger");
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=3 ! jpegenc ! kafkasink name=sink topic={topic} \
         bootstrap-servers={} create-topic=true linger-ms=200000",
        bootstrap()
    ));
    let end = run(&pipeline, TIMEOUT);
    assert!(matches!(end, End::Eos), "{end:?}");
    assert_eq!(record_count(&topic), 3);
}

/// `upstream` says what the sources cannot: a live source said to be not
/// live is held back with a 5 ms linger, a source that is not live said to
/// be live is queued with 1 ms; `auto` asks the sources (videotestsrc
/// behind jpegenc here).
#[test]
fn upstream_says_whether_the_stream_is_held_back() {
    for (source, upstream, linger_ms, run_ahead_bytes) in [
        ("videotestsrc is-live=true", "not-live", 5.0, 2_000_000),
        ("videotestsrc", "live", 1.0, 0),
        ("videotestsrc", "auto", 5.0, 2_000_000),
        ("videotestsrc is-live=true", "auto", 1.0, 0u64),
    ] {
        let topic = unique_topic("sink-upstream");
        let pipeline = launch(&format!(
            "{source} ! jpegenc ! kafkasink name=sink topic={topic} bootstrap-servers={} \
             create-topic=true upstream={upstream}",
            bootstrap()
        ));
        // The sink starts (and decides) on its way to READY.
        pipeline.set_state(gst::State::Ready).unwrap();
        let stats = stats(&pipeline, "sink");
        pipeline.set_state(gst::State::Null).unwrap();
        let case = format!("{source}, upstream={upstream}: {stats}");
        assert_eq!(stats.get::<f64>("linger-ms").unwrap(), linger_ms, "{case}");
        assert_eq!(
            stats.get::<u64>("run-ahead-bytes").unwrap(),
            run_ahead_bytes,
            "{case}"
        );
    }
}

#[test]
fn write_headers_off_gives_bare_values() {
    let topic = unique_topic("sink-bare");
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=3 ! jpegenc ! kafkasink topic={topic} bootstrap-servers={} \
         create-topic=true write-headers=false",
        bootstrap()
    ));
    assert!(matches!(run(&pipeline, TIMEOUT), End::Eos));
    let records = read_topic(&topic);
    assert_eq!(records.len(), 3);
    for record in records {
        assert!(record.headers.is_empty());
        assert!(jpeg_like(&record.value));
    }
}

#[test]
fn unreachable_broker_fails_within_the_timeout() {
    let port = free_port();
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=1 ! kafkasink topic=t bootstrap-servers=127.0.0.1:{port} \
         connect-timeout-ms=2000"
    ));
    let started = Instant::now();
    let message = expect_error(run(&pipeline, Duration::from_secs(20)));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        message.contains(&format!("cannot reach Kafka at 127.0.0.1:{port}")),
        "{message}"
    );
}

#[test]
fn missing_topic_property_is_an_error() {
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=1 ! kafkasink bootstrap-servers={}",
        bootstrap()
    ));
    let message = expect_error(run(&pipeline, TIMEOUT));
    assert!(message.contains("topic property is not set"), "{message}");
}

/// A topic created while the sink starts, as the broker's metadata may
/// lag a creation that just returned, is found and published to.
#[test]
fn a_topic_created_while_the_sink_starts_is_found() {
    let topic = unique_topic("sink-late");
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 ! jpegenc \
         ! kafkasink name=sink topic={topic} bootstrap-servers={}",
        bootstrap()
    ));
    let creator = {
        let topic = topic.clone();
        std::thread::spawn(move || {
            // The scenario, not a wait: the topic appears after the sink
            // first looked (about 20 ms into its start), well within its
            // 1 s grace. A slow start that looks later passes untested.
            std::thread::sleep(Duration::from_millis(100));
            create_topic(&topic, 1, &[]);
        })
    };
    let end = run(&pipeline, TIMEOUT);
    creator.join().unwrap();
    assert!(matches!(end, End::Eos), "{end:?}");
    assert_eq!(read_topic(&topic).len(), 3);
}

#[test]
fn missing_topic_without_create_topic_is_an_error() {
    let topic = unique_topic("sink-missing");
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=1 ! kafkasink topic={topic} bootstrap-servers={}",
        bootstrap()
    ));
    let message = expect_error(run(&pipeline, TIMEOUT));
    assert!(
        message.contains(&format!(
            "topic {topic} does not exist and create-topic is off"
        )),
        "{message}"
    );
    assert!(!topic_exists(&topic), "the sink must not create the topic");
}

/// Whether the broker knows `topic`. A failed metadata request panics: it
/// must not pass for a missing topic.
fn topic_exists(topic: &str) -> bool {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("allow.auto.create.topics", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let entry = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .expect("the topic asked about");
    match entry.error().map(RDKafkaErrorCode::from) {
        None => !entry.partitions().is_empty(),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => false,
        Some(code) => panic!("metadata of {topic}: {code}"),
    }
}

#[test]
fn invalid_librdkafka_key_is_named() {
    let topic = unique_topic("sink-bad-config");
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=1 ! kafkasink topic={topic} bootstrap-servers={} \
         config=\"config,no.such.setting=1\"",
        bootstrap()
    ));
    let message = expect_error(run(&pipeline, TIMEOUT));
    assert!(message.contains("\"no.such.setting\""), "{message}");
}

#[test]
fn invalid_config_file_key_is_named() {
    let topic = unique_topic("sink-bad-config-file");
    let path = std::env::temp_dir().join(format!("{topic}.properties"));
    std::fs::write(&path, "# producer settings\nlinger.ms=2\nbogus.key = 3\n").unwrap();
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=1 ! kafkasink topic={topic} bootstrap-servers={} config-file={}",
        bootstrap(),
        path.display()
    ));
    let message = expect_error(run(&pipeline, TIMEOUT));
    std::fs::remove_file(&path).unwrap();
    assert!(message.contains("\"bogus.key\""), "{message}");
}

/// Pushes image/jpeg buffers of the given sizes through appsrc into a kafkasink.
fn push_sizes(sink_properties: &str, sizes: &[usize]) -> (gst::Pipeline, End) {
    init();
    push_with_caps(
        &gst::Caps::new_empty_simple("image/jpeg"),
        sink_properties,
        sizes,
    )
}

/// Pushes buffers of the given sizes and caps through appsrc into a kafkasink.
fn push_with_caps(
    caps: &gst::Caps,
    sink_properties: &str,
    sizes: &[usize],
) -> (gst::Pipeline, End) {
    let buffers: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| vec![(i % 251) as u8; *size])
        .collect();
    push_buffers(caps, sink_properties, &buffers)
}

/// `frames` as image/jpeg buffers into a kafkasink publishing to `topic`
/// with `sink_properties`.
fn push_jpegs(topic: &str, sink_properties: &str, frames: &[Vec<u8>]) -> (gst::Pipeline, End) {
    push_buffers(
        &gst::Caps::new_empty_simple("image/jpeg"),
        &format!("topic={topic} {sink_properties}"),
        frames,
    )
}

#[test]
fn record_over_the_producer_limit_names_size_limit_and_setting() {
    let topic = unique_topic("sink-too-large");
    let (pipeline, end) = push_sizes(
        &format!("topic={topic} create-topic=true max-message-bytes=20000 chunking=off"),
        &[1000, 50_000],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    let message = expect_error(end);
    assert!(message.contains("frame of 50000 bytes"), "{message}");
    assert!(message.contains("limit of 20000 bytes"), "{message}");
    assert!(message.contains("max-message-bytes"), "{message}");
    assert!(message.contains("chunking=auto"), "{message}");
    assert_eq!(record_count(&topic), 1);
}

#[test]
fn key_and_headers_count_towards_the_record_limit() {
    // 880 bytes fit a 1000-byte record alone, not with these key or headers.
    let long_key = "k".repeat(200);
    for properties in [
        "chunking=off",
        &format!("write-headers=false key={long_key}"),
    ] {
        let topic = unique_topic("sink-record-parts");
        let (pipeline, end) = push_sizes(
            &format!("topic={topic} create-topic=true max-message-bytes=1000 {properties}"),
            &[500, 880],
        );
        pipeline.set_state(gst::State::Null).unwrap();
        let message = expect_error(end);
        assert!(message.contains("frame of 880 bytes"), "{message}");
        assert!(
            message.contains("larger than the Kafka record limit of 1000 bytes"),
            "{message}"
        );
        assert!(message.contains("max-message-bytes"), "{message}");
        assert_eq!(record_count(&topic), 1, "{properties}");
    }
}

#[test]
fn caps_longer_than_kafkasrc_reads_are_refused_at_negotiation() {
    init();
    // codec_data is written as hex: 40 KiB of it make 80 KiB of caps text.
    let caps = gst::Caps::builder("video/x-h264")
        .field("stream-format", "avc")
        .field("alignment", "au")
        .field(
            "codec_data",
            gst::Buffer::from_mut_slice(vec![0x5a_u8; 40 * 1024]),
        )
        .build();
    let caps_len = caps.to_string().len();
    assert!(caps_len > gstkafka::wireformat::MAX_TEXT_LEN);
    let topic = unique_topic("sink-long-caps");
    create_topic(&topic, 1, &[]);
    let (pipeline, end) = push_with_caps(&caps, &format!("topic={topic}"), &[100]);
    pipeline.set_state(gst::State::Null).unwrap();
    let message = expect_error(end);
    assert!(
        message.contains(&format!("caps of {caps_len} bytes")),
        "{message}"
    );
    assert!(
        message.contains(&format!("{} bytes", gstkafka::wireformat::MAX_TEXT_LEN)),
        "{message}"
    );
    assert_eq!(record_count(&topic), 0);

    // Without headers the caps are not written, so they do not matter.
    let (pipeline, end) =
        push_with_caps(&caps, &format!("topic={topic} write-headers=false"), &[100]);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(matches!(end, End::Eos), "{end:?}");
    assert_eq!(record_count(&topic), 1);
}

#[test]
fn record_over_the_topic_limit_names_the_topic_setting() {
    let topic = unique_topic("sink-topic-limit");
    create_topic(&topic, 1, &[("max.message.bytes", "30000")]);
    let (pipeline, end) = push_sizes(&format!("topic={topic} chunking=off"), &[40_000]);
    pipeline.set_state(gst::State::Null).unwrap();
    let message = expect_error(end);
    assert!(message.contains("frame of 40000 bytes"), "{message}");
    assert!(message.contains("limit of 30000 bytes"), "{message}");
    assert!(message.contains("max.message.bytes"), "{message}");
    assert_eq!(record_count(&topic), 0);
}

#[test]
fn frames_over_a_1_mb_topic_limit_are_chunked_on_one_partition() {
    const LIMIT: usize = 1_048_576;
    init();
    let topic = unique_topic("sink-chunked");
    create_topic(&topic, 3, &[("max.message.bytes", &LIMIT.to_string())]);
    let frames: Vec<Vec<u8>> = [1000, 3_000_000, 700_000, 2_500_000]
        .iter()
        .enumerate()
        .map(|(i, len)| random_bytes(*len, i as u64 + 1))
        .collect();
    let (pipeline, end) = push_jpegs(&topic, "key=cam7", &frames);
    assert!(matches!(end, End::Eos), "{end:?}");
    let stats = sink_stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();

    let records = read_topic(&topic);
    // 1 + 3 + 1 + 3 records, all in the key's one partition, in order.
    assert_eq!(records.len(), 8);
    let partition = records[0].partition;
    assert!(records.iter().all(|r| r.partition == partition));
    assert!(
        records
            .iter()
            .all(|r| r.key.as_deref() == Some(&b"cam7"[..]))
    );
    let mut at = 0;
    for (seq, frame) in frames.iter().enumerate() {
        let first = &records[at];
        assert_eq!(first.header("gst-seq"), Some(seq.to_string().as_str()));
        if frame.len() < LIMIT {
            // A frame that fits is one record as ever: no chunk header.
            assert_eq!(first.header("gst-version"), Some("1"));
            assert_eq!(first.header("gst-chunk-count"), None);
            assert_eq!(&first.value, frame);
            at += 1;
            continue;
        }
        let count: usize = first.header("gst-chunk-count").unwrap().parse().unwrap();
        assert_eq!(count, frame.len().div_ceil(LIMIT - 1000), "frame {seq}");
        let chunks = &records[at..at + count];
        for (index, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.header("gst-version"), Some("2"));
            assert_eq!(chunk.header("gst-seq"), Some(seq.to_string().as_str()));
            assert_eq!(
                chunk.header("gst-chunk-index"),
                Some(index.to_string().as_str())
            );
            assert_eq!(
                chunk.header("gst-frame-size"),
                Some(frame.len().to_string().as_str())
            );
            assert_eq!(chunk.timestamp_ms, first.timestamp_ms);
            // The frame's caps and times on chunk 0 only.
            assert_eq!(chunk.header("gst-caps").is_some(), index == 0);
            assert_eq!(
                chunk.header("gst-pts"),
                (index == 0)
                    .then(|| (seq as u64 * 40_000_000).to_string())
                    .as_deref()
            );
            let size: usize = 4
                + chunk.value.len()
                + chunk
                    .headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
            assert!(size < LIMIT, "chunk record of at least {size} bytes");
        }
        let rebuilt: Vec<u8> = chunks.iter().flat_map(|c| c.value.clone()).collect();
        assert!(&rebuilt == frame, "frame {seq} not rebuilt byte for byte");
        at += count;
    }
    assert_eq!(stats.get::<u64>("frames-chunked").unwrap(), 2);
    assert_eq!(stats.get::<u64>("chunks-sent").unwrap(), 6);
    assert_eq!(stats.get::<u64>("records-acked").unwrap(), 8);
    assert_eq!(stats.get::<u64>("delivery-errors").unwrap(), 0);
}

#[test]
fn create_topic_with_three_partitions() {
    let topic = unique_topic("sink-create");
    let (pipeline, end) = push_sizes(
        &format!("topic={topic} create-topic=true partitions=3"),
        &[100; 5],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(matches!(end, End::Eos), "{end:?}");
    assert_eq!(partition_count(&topic), 3);
    let records = read_topic(&topic);
    assert_eq!(records.len(), 5);
    // One stream, one partition, in order.
    assert!(records.iter().all(|r| r.partition == records[0].partition));
    let seqs: Vec<&str> = records
        .iter()
        .map(|r| r.header("gst-seq").unwrap())
        .collect();
    assert_eq!(seqs, ["0", "1", "2", "3", "4"]);
}

#[test]
fn partition_property_routes_every_record() {
    let topic = unique_topic("sink-partition");
    create_topic(&topic, 4, &[]);
    let (pipeline, end) = push_sizes(&format!("topic={topic} partition=2"), &[100; 6]);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(matches!(end, End::Eos), "{end:?}");
    let records = read_topic(&topic);
    assert_eq!(records.len(), 6);
    assert!(records.iter().all(|r| r.partition == 2), "{records:?}");
}

#[test]
fn partition_beyond_the_topic_is_an_error() {
    let topic = unique_topic("sink-partition-missing");
    create_topic(&topic, 2, &[]);
    let (pipeline, end) = push_sizes(&format!("topic={topic} partition=5"), &[100]);
    pipeline.set_state(gst::State::Null).unwrap();
    let message = expect_error(end);
    assert!(message.contains("partition 5 does not exist"), "{message}");
}

#[test]
fn key_routes_cameras_to_stable_partitions() {
    let topic = unique_topic("sink-keys");
    create_topic(&topic, 4, &[]);
    for camera in ["door", "yard", "door"] {
        let (pipeline, end) = push_sizes(&format!("topic={topic} key={camera}"), &[100; 3]);
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(matches!(end, End::Eos), "{end:?}");
    }
    let records = read_topic(&topic);
    assert_eq!(records.len(), 9);
    for camera in ["door", "yard"] {
        let of_camera: Vec<&Record> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(camera.as_bytes()))
            .collect();
        assert!(!of_camera.is_empty());
        assert!(
            of_camera
                .iter()
                .all(|r| r.partition == of_camera[0].partition),
            "{camera} spread over partitions"
        );
    }
    let door: Vec<&Record> = records
        .iter()
        .filter(|r| r.key.as_deref() == Some(b"door"))
        .collect();
    assert_eq!(door.len(), 6);
}

#[test]
fn full_queue_blocks_without_losing_records() {
    let topic = unique_topic("sink-queue-block");
    const N: usize = 40;
    let (pipeline, end) = push_sizes(
        &format!(
            "topic={topic} create-topic=true config=\"config,queue.buffering.max.messages=1\""
        ),
        &[20_000; N],
    );
    let stats = sink_stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(matches!(end, End::Eos), "{end:?}");
    assert_eq!(stats.get::<u64>("records-acked").unwrap(), N as u64);
    assert_eq!(stats.get::<u64>("dropped").unwrap(), 0);
    // The queue did fill: the sink waited for room.
    assert!(stats.get::<u64>("queue-full-waits").unwrap() > 0, "{stats}");
    assert_eq!(record_count(&topic), N as i64);
}

#[test]
fn full_queue_in_drop_mode_accounts_for_every_buffer() {
    let topic = unique_topic("sink-queue-drop");
    const N: u64 = 40;
    let (pipeline, end) = push_sizes(
        &format!(
            "topic={topic} create-topic=true queue-full=drop \
             config=\"config,queue.buffering.max.messages=1\""
        ),
        &[20_000; N as usize],
    );
    let stats = sink_stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(matches!(end, End::Eos), "{end:?}");
    let acked = stats.get::<u64>("records-acked").unwrap();
    let dropped = stats.get::<u64>("dropped").unwrap();
    assert!(dropped > 0, "{stats}");
    assert_eq!(acked + dropped, N);
    assert_eq!(record_count(&topic), acked as i64);
    // Dropped buffers leave gaps in the sequence numbers a consumer sees.
    let records = read_topic(&topic);
    let last_seq: u64 = records
        .last()
        .unwrap()
        .header("gst-seq")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        last_seq + 1 - records.len() as u64,
        dropped - (N - 1 - last_seq)
    );
}

#[test]
fn null_returns_promptly_while_blocked_on_a_full_queue() {
    init();
    let topic = unique_topic("sink-unlock");
    create_topic(&topic, 1, &[]);
    // A one-record queue keeps the sink waiting for room most of the time;
    // NULL must still return at once.
    let pipeline = launch(&format!(
        "appsrc name=src format=time caps=image/jpeg ! kafkasink name=sink topic={topic} \
         bootstrap-servers={} config=\"config,queue.buffering.max.messages=1\"",
        bootstrap()
    ));
    let appsrc = element::<gst_app::AppSrc>(&pipeline, "src");
    pipeline.set_state(gst::State::Playing).unwrap();
    let pusher = std::thread::spawn(move || {
        for _ in 0..100_000 {
            if appsrc
                .push_buffer(gst::Buffer::from_mut_slice(vec![0u8; 100]))
                .is_err()
            {
                break;
            }
        }
    });
    let sink = pipeline.by_name("sink").unwrap();
    assert!(wait_until(Duration::from_secs(20), || {
        sink.property::<gst::Structure>("stats")
            .get::<u64>("records-sent")
            .unwrap()
            > 10
    }));
    let started = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    pusher.join().unwrap();
}

#[test]
fn librdkafka_statistics_are_posted_as_element_messages() {
    let topic = unique_topic("sink-statistics");
    let pipeline = launch(&format!(
        "videotestsrc is-live=true num-buffers=30 ! jpegenc ! kafkasink topic={topic} bootstrap-servers={} \
         create-topic=true statistics-interval-ms=100",
        bootstrap()
    ));
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Element, gst::MessageType::Error],
        )
        .expect("a kafka-statistics message");
    pipeline.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(err) = message.view() {
        panic!("error before any statistics: {}", err.error());
    }
    let structure = message.structure().unwrap();
    assert_eq!(structure.name(), "kafka-statistics");
    let json = structure.get::<String>("json").unwrap();
    assert!(
        json.starts_with('{') && json.contains("\"type\": \"producer\"")
            || json.contains("\"type\":\"producer\""),
        "{json}"
    );
}

#[test]
fn chunks_of_a_limit_below_librdkafkas_batch_size_are_not_batched_over_it() {
    init();
    // A stream that runs ahead is batched up to 1 MB: about ten chunks of
    // a 100 kB limit would go as one batch the broker refuses.
    let topic = unique_topic("sink-small-limit");
    create_topic(&topic, 1, &[("max.message.bytes", "100000")]);
    let frames: Vec<Vec<u8>> = (0..5).map(|i| random_bytes(600_000, 30 + i)).collect();
    let (pipeline, end) = push_jpegs(&topic, "", &frames);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(matches!(end, End::Eos), "{end:?}");
    let records = read_topic(&topic);
    assert_eq!(records.len(), 5 * 7);
    let rebuilt: Vec<u8> = records.iter().flat_map(|r| r.value.clone()).collect();
    assert!(rebuilt == frames.concat());
}

/// A stream that runs ahead goes in librdkafka's 1 MB batches, unless its
/// first frame is of 100-200 kB: five of those or more to a batch fill
/// librdkafka's idempotence window, so requests went one at a time, and the
/// producer is made again at the first frame with batches of 500 kB and a
/// 20 ms linger (unless the user set one), which later frames of other
/// sizes keep. Every frame arrives, in order,
/// through the producer made again; a live stream or the user's batch.size
/// keeps the producer as it was made.
#[test]
fn the_first_frame_of_a_stream_that_runs_ahead_chooses_its_batch_size() {
    init();
    const FRAMES: u64 = 12;
    for (first_size, size, properties, batch_size, linger_ms) in [
        (150_000, 150_000, "", 500_000, 20.0),
        (150_000, 25_000, "", 500_000, 20.0),
        (25_000, 25_000, "", 1_000_000, 5.0),
        (25_000, 150_000, "", 1_000_000, 5.0),
        (300_000, 300_000, "", 1_000_000, 5.0),
        (150_000, 150_000, "upstream=live", 1_000_000, 1.0),
        (150_000, 150_000, "linger-ms=2", 500_000, 2.0),
        (
            150_000,
            150_000,
            "config=\"config,batch.size=800000\"",
            800_000u64,
            5.0,
        ),
    ] {
        let case = format!("frames of {first_size} then {size} bytes, {properties:?}");
        let topic = unique_topic("sink-batch-size");
        create_topic(&topic, 1, &[]);
        let frames: Vec<Vec<u8>> = (0..FRAMES)
            .map(|i| random_bytes(if i == 0 { first_size } else { size }, 50 + i))
            .collect();
        let (pipeline, end) = push_jpegs(&topic, properties, &frames);
        let stats = stats(&pipeline, "sink");
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(matches!(end, End::Eos), "{case}: {end:?}");
        assert_eq!(
            stats.get::<u64>("batch-size").unwrap(),
            batch_size,
            "{case}: {stats}"
        );
        assert_eq!(
            stats.get::<f64>("linger-ms").unwrap(),
            linger_ms,
            "{case}: {stats}"
        );
        assert_eq!(
            stats.get::<u64>("records-acked").unwrap(),
            FRAMES,
            "{case}: {stats}"
        );
        let values: Vec<Vec<u8>> = read_topic(&topic).into_iter().map(|r| r.value).collect();
        assert!(
            values == frames,
            "{case}: the records are not the frames in order"
        );
    }
}

#[test]
fn a_live_stream_is_not_batched_over_a_limit_between_half_and_one_megabyte() {
    init();
    // A live stream is queued in librdkafka, which batches up to 1,000,000
    // bytes: three frames of 300 kB, held together by the linger, would go
    // as one batch of 900 kB, over the topic's 700 kB.
    let topic = unique_topic("sink-live-limit");
    create_topic(&topic, 1, &[("max.message.bytes", "700000")]);
    let frames: Vec<Vec<u8>> = (0..6).map(|i| random_bytes(300_000, 40 + i)).collect();
    let (pipeline, end) = push_jpegs(&topic, "upstream=live linger-ms=200", &frames);
    let stats = stats(&pipeline, "sink");
    pipeline.set_state(gst::State::Null).unwrap();
    // Queued in librdkafka, not held back.
    assert_eq!(stats.get::<u64>("run-ahead-bytes").unwrap(), 0, "{stats}");
    assert_eq!(stats.get::<f64>("linger-ms").unwrap(), 200.0, "{stats}");
    assert!(matches!(end, End::Eos), "{end:?}");
    let values: Vec<Vec<u8>> = read_topic(&topic).into_iter().map(|r| r.value).collect();
    assert!(values == frames, "the records are not the frames in order");
}

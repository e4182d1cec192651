// SPDX-License-Identifier: MPL-2.0

//! kafkasrc against the real Apache Kafka broker: records written by
//! kafkasink or by an independent rdkafka producer, read back through
//! appsink.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A kafkasrc named `src` feeding an appsink named `out`.
fn source(properties: &str) -> (gst::Pipeline, gst_app::AppSink) {
    source_into(properties, "")
}

fn source_into(properties: &str, between: &str) -> (gst::Pipeline, gst_app::AppSink) {
    let pipeline = launch(&format!(
        "kafkasrc name=src bootstrap-servers={} {properties} ! {between} appsink name=out sync=false",
        bootstrap()
    ));
    let appsink = appsink_of(&pipeline);
    (pipeline, appsink)
}

/// The appsink called `out` of `pipeline`.
fn appsink_of(pipeline: &gst::Pipeline) -> gst_app::AppSink {
    element::<gst_app::AppSink>(pipeline, "out")
}

fn pull(appsink: &gst_app::AppSink) -> gst::Sample {
    appsink
        .try_pull_sample(gst::ClockTime::from_seconds(30))
        .expect("a buffer within 30 s")
}

/// Pulls until EOS, failing on a pipeline error.
fn pull_to_eos(pipeline: &gst::Pipeline, appsink: &gst_app::AppSink) -> Vec<gst::Sample> {
    pull_to_eos_with_warnings(pipeline, appsink).0
}

/// Pulls until EOS, failing on a pipeline error; also returns the warnings.
fn pull_to_eos_with_warnings(
    pipeline: &gst::Pipeline,
    appsink: &gst_app::AppSink,
) -> (Vec<gst::Sample>, Vec<String>) {
    let bus = pipeline.bus().unwrap();
    let (mut samples, mut warnings) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no EOS within {TIMEOUT:?}");
        let sample = appsink.try_pull_sample(gst::ClockTime::from_mseconds(200));
        while let Some(message) = bus.pop() {
            match message.view() {
                gst::MessageView::Error(err) => panic!("pipeline error: {err:?}"),
                gst::MessageView::Warning(w) => warnings.push(w.error().message().to_string()),
                _ => (),
            }
        }
        match sample {
            Some(sample) => samples.push(sample),
            None if appsink.is_eos() => return (samples, warnings),
            None => (),
        }
    }
}

/// Runs a source with `properties` to EOS: its buffers, warnings and final
/// stats.
fn read_to_eos(properties: &str) -> (Vec<gst::Sample>, Vec<String>, gst::Structure) {
    let (pipeline, appsink) = source(properties);
    pipeline.set_state(gst::State::Playing).unwrap();
    let (samples, warnings) = pull_to_eos_with_warnings(&pipeline, &appsink);
    let stats = stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    (samples, warnings, stats)
}

fn value(sample: &gst::Sample) -> Vec<u8> {
    sample.buffer().unwrap().map_readable().unwrap().to_vec()
}

fn stats(pipeline: &gst::Pipeline) -> gst::Structure {
    pipeline.by_name("src").unwrap().property("stats")
}

fn producer() -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap()
}

/// Plain records `prefix-0`, `prefix-1`, … with the given timestamps.
fn produce_timed(topic: &str, prefix: &str, timestamps: &[i64]) {
    let producer = producer();
    for (i, ts) in timestamps.iter().enumerate() {
        let value = format!("{prefix}-{i}");
        producer
            .send(
                BaseRecord::<(), _>::to(topic)
                    .payload(&value)
                    .timestamp(*ts),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn values(prefix: &str, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range
        .map(|i| format!("{prefix}-{i}").into_bytes())
        .collect()
}

/// Writes `n` JPEG frames with kafkasink and returns what it wrote.
fn write_jpeg_frames(topic: &str, n: usize) -> Vec<Record> {
    let writer = launch(&format!(
        "videotestsrc num-buffers={n} ! video/x-raw,width=160,height=120,framerate=30/1 ! jpegenc \
         ! kafkasink topic={topic} bootstrap-servers={} create-topic=true",
        bootstrap()
    ));
    assert!(matches!(run(&writer, TIMEOUT), End::Eos));
    read_topic(topic)
}

#[test]
fn round_trip_with_kafkasink_in_original_mode() {
    let topic = unique_topic("src-round-trip");
    let records = write_jpeg_frames(&topic, 20);
    let (pipeline, appsink) = source(&format!(
        "topic={topic} start-from=earliest stop-at=end timestamp-mode=original"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let samples = pull_to_eos(&pipeline, &appsink);
    let stats = stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();

    assert_eq!(samples.len(), records.len());
    for (sample, record) in samples.iter().zip(&records) {
        assert_eq!(value(sample), record.value);
        let caps: gst::Caps = record.header("gst-caps").unwrap().parse().unwrap();
        assert_eq!(sample.caps().unwrap(), &caps);
        let buffer = sample.buffer().unwrap();
        let pts: u64 = record.header("gst-pts").unwrap().parse().unwrap();
        assert_eq!(buffer.pts(), Some(gst::ClockTime::from_nseconds(pts)));
        let duration: u64 = record.header("gst-duration").unwrap().parse().unwrap();
        assert_eq!(
            buffer.duration(),
            Some(gst::ClockTime::from_nseconds(duration))
        );
    }
    assert!(
        samples[0]
            .buffer()
            .unwrap()
            .flags()
            .contains(gst::BufferFlags::DISCONT)
    );
    assert!(
        !samples[1]
            .buffer()
            .unwrap()
            .flags()
            .contains(gst::BufferFlags::DISCONT)
    );
    assert_eq!(stats.get::<u64>("buffers-pushed").unwrap(), 20);
    assert_eq!(stats.get::<u64>("sequence-gaps").unwrap(), 0);
    assert_eq!(stats.get::<u64>("bad-records").unwrap(), 0);
}

#[test]
fn plain_records_get_the_caps_property() {
    let topic = unique_topic("src-plain");
    create_topic(&topic, 1, &[]);
    produce_plain(&topic, &values("plain", 0..3));
    let (pipeline, appsink) = source(&format!(
        "topic={topic} start-from=earliest stop-at=end caps=\"image/jpeg,framerate=(fraction)5/1\""
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let samples = pull_to_eos(&pipeline, &appsink);
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(
        samples.iter().map(value).collect::<Vec<_>>(),
        values("plain", 0..3)
    );
    let caps = samples[0].caps().unwrap().structure(0).unwrap().to_owned();
    assert_eq!(caps.name(), "image/jpeg");
    assert_eq!(
        caps.get::<gst::Fraction>("framerate").unwrap(),
        gst::Fraction::new(5, 1)
    );

    // Without the property: image/jpeg, as the tutorial's producer writes.
    let (pipeline, appsink) = source(&format!("topic={topic} start-from=earliest stop-at=end"));
    pipeline.set_state(gst::State::Playing).unwrap();
    let samples = pull_to_eos(&pipeline, &appsink);
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0].caps().unwrap().to_string(), "image/jpeg");
}

#[test]
fn latest_sees_only_records_produced_after_start() {
    let topic = unique_topic("src-latest");
    create_topic(&topic, 2, &[]);
    produce_plain(&topic, &values("old", 0..5));
    let (pipeline, appsink) = source(&format!("topic={topic}"));
    pipeline.set_state(gst::State::Playing).unwrap();
    produce_plain(&topic, &values("new", 0..3));
    let mut got: Vec<Vec<u8>> = (0..3).map(|_| value(&pull(&appsink))).collect();
    got.sort();
    assert_eq!(got, values("new", 0..3));
    assert!(
        appsink
            .try_pull_sample(gst::ClockTime::from_mseconds(300))
            .is_none()
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn timestamp_starts_at_the_first_record_at_or_after_start_time() {
    let topic = unique_topic("src-timestamp");
    create_topic(&topic, 1, &[]);
    let base = 1_795_000_000_000i64;
    let timestamps: Vec<i64> = (0..10).map(|i| base + i * 1000).collect();
    produce_timed(&topic, "t", &timestamps);
    for start_time in [
        (base + 4500).to_string(),
        "2026-11-18T11:06:44.500Z".to_string(),
    ] {
        // base + 4500 ms is 2026-11-18T11:06:44.500Z.
        let (pipeline, appsink) = source(&format!(
            "topic={topic} start-from=timestamp start-time={start_time} stop-at=end"
        ));
        pipeline.set_state(gst::State::Playing).unwrap();
        let samples = pull_to_eos(&pipeline, &appsink);
        pipeline.set_state(gst::State::Null).unwrap();
        assert_eq!(
            samples.iter().map(value).collect::<Vec<_>>(),
            values("t", 5..10),
            "{start_time}"
        );
    }
}

#[test]
fn stop_at_timestamp_ends_after_the_last_record_before_it() {
    let topic = unique_topic("src-stop-time");
    create_topic(&topic, 1, &[]);
    let base = 1_795_000_000_000i64;
    let timestamps: Vec<i64> = (0..10).map(|i| base + i * 1000).collect();
    produce_timed(&topic, "s", &timestamps);
    let (pipeline, appsink) = source(&format!(
        "topic={topic} start-from=earliest stop-at=timestamp stop-time={}",
        base + 3000
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let samples = pull_to_eos(&pipeline, &appsink);
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(
        samples.iter().map(value).collect::<Vec<_>>(),
        values("s", 0..4)
    );
}

#[test]
fn seek_in_original_mode_lands_on_the_right_record() {
    let topic = unique_topic("src-seek");
    create_topic(&topic, 1, &[]);
    let base = 1_795_000_000_000i64;
    let timestamps: Vec<i64> = (0..10).map(|i| base + i * 1000).collect();
    produce_timed(&topic, "k", &timestamps);
    let (pipeline, appsink) = source(&format!(
        "topic={topic} start-from=earliest timestamp-mode=original"
    ));
    appsink.set_max_buffers(1);
    pipeline.set_state(gst::State::Paused).unwrap();
    pipeline.state(gst::ClockTime::from_seconds(30)).0.unwrap();
    let first = appsink
        .try_pull_preroll(gst::ClockTime::from_seconds(10))
        .unwrap();
    assert_eq!(value(&first), b"k-0");
    assert_eq!(first.buffer().unwrap().pts(), Some(gst::ClockTime::ZERO));

    pipeline
        .seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::from_mseconds(6500))
        .unwrap();
    pipeline.state(gst::ClockTime::from_seconds(30)).0.unwrap();
    let landed = appsink
        .try_pull_preroll(gst::ClockTime::from_seconds(10))
        .unwrap();
    assert_eq!(value(&landed), b"k-7");
    assert_eq!(
        landed.buffer().unwrap().pts(),
        Some(gst::ClockTime::from_seconds(7))
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn stop_at_end_on_an_empty_topic_is_immediate_eos() {
    let topic = unique_topic("src-empty");
    create_topic(&topic, 3, &[]);
    let (pipeline, appsink) = source(&format!("topic={topic} start-from=earliest stop-at=end"));
    pipeline.set_state(gst::State::Playing).unwrap();
    assert!(pull_to_eos(&pipeline, &appsink).is_empty());
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn consumer_group_resumes_after_restart_without_gap_or_repeat() {
    let topic = unique_topic("src-group");
    let group = unique_topic("group");
    create_topic(&topic, 1, &[]);
    produce_plain(&topic, &values("g", 0..10));
    let properties = format!("topic={topic} group-id={group} start-from=earliest");

    let (pipeline, appsink) = source(&properties);
    pipeline.set_state(gst::State::Playing).unwrap();
    let first: Vec<Vec<u8>> = (0..10).map(|_| value(&pull(&appsink))).collect();
    assert_eq!(first, values("g", 0..10));
    pipeline.set_state(gst::State::Null).unwrap();

    produce_plain(&topic, &values("h", 0..5));
    let (pipeline, appsink) = source(&properties);
    pipeline.set_state(gst::State::Playing).unwrap();
    let second: Vec<Vec<u8>> = (0..5).map(|_| value(&pull(&appsink))).collect();
    assert_eq!(second, values("h", 0..5));
    assert!(
        appsink
            .try_pull_sample(gst::ClockTime::from_mseconds(300))
            .is_none()
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn two_group_members_split_partitions_without_overlap() {
    let topic = unique_topic("src-split");
    let group = unique_topic("split");
    create_topic(&topic, 4, &[]);
    let properties = format!("topic={topic} group-id={group} start-from=earliest");
    let (a, a_sink) = source(&properties);
    let (b, b_sink) = source(&properties);
    a.set_state(gst::State::Playing).unwrap();
    b.set_state(gst::State::Playing).unwrap();
    let assigned = |p: &gst::Pipeline| stats(p).get::<u32>("assigned-partitions").unwrap();
    assert!(
        wait_until(TIMEOUT, || {
            let (x, y) = (assigned(&a), assigned(&b));
            x > 0 && y > 0 && x + y == 4
        }),
        "partitions not split: {} and {}",
        assigned(&a),
        assigned(&b)
    );

    let producer = producer();
    for i in 0..40 {
        let value = format!("m-{i}");
        producer
            .send(
                BaseRecord::<(), _>::to(&topic)
                    .payload(&value)
                    .partition(i % 4),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let mut seen = Vec::new();
    let (mut from_a, mut from_b) = (0, 0);
    let deadline = Instant::now() + TIMEOUT;
    while seen.len() < 40 && Instant::now() < deadline {
        if let Some(s) = a_sink.try_pull_sample(gst::ClockTime::from_mseconds(50)) {
            seen.push(value(&s));
            from_a += 1;
        }
        if let Some(s) = b_sink.try_pull_sample(gst::ClockTime::from_mseconds(50)) {
            seen.push(value(&s));
            from_b += 1;
        }
    }
    a.set_state(gst::State::Null).unwrap();
    b.set_state(gst::State::Null).unwrap();
    seen.sort();
    let mut expected = values("m", 0..40);
    expected.sort();
    assert_eq!(seen, expected);
    assert!(from_a > 0 && from_b > 0, "{from_a} / {from_b}");
}

#[test]
fn key_keeps_one_camera() {
    let topic = unique_topic("src-key");
    create_topic(&topic, 1, &[]);
    let producer = producer();
    for i in 0..6 {
        let key = if i % 2 == 0 { "door" } else { "yard" };
        let value = format!("{key}-{i}");
        producer
            .send(BaseRecord::to(&topic).key(key).payload(&value))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let (pipeline, appsink) = source(&format!(
        "topic={topic} key=yard start-from=earliest stop-at=end"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let samples = pull_to_eos(&pipeline, &appsink);
    let stats = stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    let got: Vec<Vec<u8>> = samples.iter().map(value).collect();
    assert_eq!(
        got,
        vec![b"yard-1".to_vec(), b"yard-3".to_vec(), b"yard-5".to_vec()]
    );
    assert_eq!(stats.get::<u64>("filtered-key").unwrap(), 3);
}

#[test]
fn h264_joined_mid_way_starts_at_a_keyframe_and_decodes() {
    let topic = unique_topic("src-h264");
    let writer = launch(&format!(
        "videotestsrc num-buffers=90 is-live=true ! video/x-raw,width=160,height=120,framerate=30/1 \
         ! openh264enc gop-size=30 ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au \
         ! kafkasink topic={topic} bootstrap-servers={} create-topic=true",
        bootstrap()
    ));
    assert!(matches!(run(&writer, TIMEOUT), End::Eos));
    let records = read_topic(&topic);
    assert_eq!(records.len(), 90);
    let keyframes: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            !r.header("gst-flags")
                .unwrap_or_default()
                .contains("delta-unit")
        })
        .map(|(i, _)| i)
        .collect();
    assert!(keyframes.len() >= 2 && keyframes[0] == 0, "{keyframes:?}");
    // Join on a delta frame between the first two keyframes.
    let join = keyframes[0] + 5;
    let start_time = records[join].timestamp_ms.unwrap();
    assert_ne!(start_time, records[join - 1].timestamp_ms.unwrap());

    let (pipeline, appsink) = source_into(
        &format!("topic={topic} start-from=timestamp start-time={start_time} stop-at=end"),
        "h264parse ! openh264dec ! videoconvert ! video/x-raw,format=I420 !",
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let samples = pull_to_eos(&pipeline, &appsink);
    let stats = stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    let skipped = keyframes[1] - join;
    assert_eq!(
        stats.get::<u64>("skipped-to-keyframe").unwrap(),
        skipped as u64
    );
    assert_eq!(
        samples.len(),
        90 - keyframes[1],
        "every frame from the keyframe on decodes"
    );
}

#[test]
fn null_while_idle_returns_within_a_second() {
    let topic = unique_topic("src-idle");
    create_topic(&topic, 1, &[]);
    let (pipeline, _appsink) = source(&format!("topic={topic}"));
    pipeline.set_state(gst::State::Playing).unwrap();
    pipeline.state(gst::ClockTime::from_seconds(10)).0.unwrap();
    let started = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn corrupt_records_are_skipped_and_counted() {
    let topic = unique_topic("src-corrupt");
    create_topic(&topic, 1, &[]);
    let producer = producer();
    let send = |payload: &[u8], headers: &[(&str, &[u8])]| {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(*value),
            });
        }
        producer
            .send(
                BaseRecord::<(), _>::to(&topic)
                    .payload(payload)
                    .headers(owned),
            )
            .unwrap();
    };
    send(b"", &[]);
    send(b"bad-seq", &[("gst-seq", b"abc")]);
    send(b"bad-caps", &[("gst-caps", b"not caps ((")]);
    send(b"nul-caps", &[("gst-caps", b"image/jpeg\0")]);
    send(b"future", &[("gst-version", b"9")]);
    send(b"good", &[("gst-caps", b"image/jpeg"), ("gst-seq", b"0")]);
    producer.flush(Duration::from_secs(30)).unwrap();

    let (samples, warnings, stats) =
        read_to_eos(&format!("topic={topic} start-from=earliest stop-at=end"));
    assert_eq!(
        samples.iter().map(value).collect::<Vec<_>>(),
        vec![b"good".to_vec()]
    );
    assert_eq!(stats.get::<u64>("bad-records").unwrap(), 5);
    assert!(
        warnings[0].contains(&format!("{topic}/0 offset 0: empty record")),
        "{warnings:?}"
    );
    assert_eq!(bad_records_reported(&warnings), 5, "{warnings:?}");
}

/// Bad records the warnings account for: one per warning naming a record,
/// plus the counts of those held back.
fn bad_records_reported(warnings: &[String]) -> u64 {
    warnings
        .iter()
        .map(|warning| {
            let named = u64::from(warning.starts_with("skipped record"));
            let held_back = warning
                .split_once(" more bad record(s)")
                .and_then(|(before, _)| before.rsplit(['(', ' ']).next())
                .map_or(0, |count| count.parse::<u64>().unwrap());
            named + held_back
        })
        .sum()
}

/// A record to produce: value, timestamp (ms), headers.
type Produced = (Vec<u8>, Option<i64>, Vec<(String, Vec<u8>)>);

/// Sends `records` to `topic`.
fn produce_with_headers(topic: &str, records: &[Produced]) {
    let producer = producer();
    for (payload, timestamp, headers) in records {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record = BaseRecord::<(), _>::to(topic)
            .payload(payload)
            .headers(owned);
        if let Some(timestamp) = timestamp {
            record = record.timestamp(*timestamp);
        }
        producer.send(record).map_err(|(err, _)| err).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

#[test]
fn a_topic_of_garbage_gives_a_handful_of_warnings_and_counts_every_record() {
    let topic = unique_topic("src-garbage");
    create_topic(&topic, 1, &[]);
    let garbage: Vec<_> = (0..1000)
        .map(|i| {
            let headers = vec![("gst-seq".to_string(), format!("x{i}").into_bytes())];
            (b"garbage".to_vec(), None, headers)
        })
        .collect();
    produce_with_headers(&topic, &garbage);
    let (pipeline, appsink) = source(&format!("topic={topic} start-from=earliest stop-at=end"));
    pipeline.set_state(gst::State::Playing).unwrap();
    let started = Instant::now();
    let (samples, warnings) = pull_to_eos_with_warnings(&pipeline, &appsink);
    let seconds = started.elapsed().as_secs();
    let stats = stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(samples.is_empty());
    assert_eq!(stats.get::<u64>("bad-records").unwrap(), 1000);
    // One per second at most, plus the summary at EOS.
    assert!(
        !warnings.is_empty() && warnings.len() as u64 <= seconds + 2,
        "{} warnings in {seconds} s: {warnings:?}",
        warnings.len()
    );
    assert!(
        warnings[0].contains("gst-seq is not a number"),
        "{warnings:?}"
    );
    assert_eq!(bad_records_reported(&warnings), 1000, "{warnings:?}");
}

/// 600 years of milliseconds.
const SIX_CENTURIES_MS: i64 = 600 * 365 * 86_400 * 1000;

#[test]
fn a_record_six_centuries_ahead_neither_panics_nor_stops_the_source() {
    let topic = unique_topic("src-far-future");
    // Kafka 4 refuses CreateTimes over an hour ahead unless told otherwise.
    create_topic(
        &topic,
        1,
        &[("message.timestamp.after.max.ms", &i64::MAX.to_string())],
    );
    let base = unix_now_ms() - 10_000;
    let timestamps = [base, base + SIX_CENTURIES_MS, base + 2000];
    produce_timed(&topic, "f", &timestamps);
    let written: Vec<Option<i64>> = read_topic(&topic).iter().map(|r| r.timestamp_ms).collect();
    assert_eq!(
        written,
        timestamps.map(Some),
        "the broker kept every timestamp"
    );

    let (samples, warnings, stats) = read_to_eos(&format!(
        "topic={topic} start-from=earliest stop-at=end timestamp-mode=original"
    ));

    // The record that no PTS can place is skipped, counted and named.
    assert_eq!(
        samples.iter().map(value).collect::<Vec<_>>(),
        vec![b"f-0".to_vec(), b"f-2".to_vec()]
    );
    let pts: Vec<_> = samples.iter().map(|s| s.buffer().unwrap().pts()).collect();
    assert_eq!(
        pts,
        [
            Some(gst::ClockTime::ZERO),
            Some(gst::ClockTime::from_seconds(2))
        ]
    );
    assert_eq!(stats.get::<u64>("bad-records").unwrap(), 1);
    assert_eq!(stats.get::<u64>("buffers-pushed").unwrap(), 2);
    assert_eq!(stats.get::<u64>("records-received").unwrap(), 3);
    assert!(
        warnings[0].contains(&format!("{topic}/0 offset 1: timestamp {}", timestamps[1]))
            && warnings[0].contains("after 2554"),
        "{warnings:?}"
    );
}

#[test]
fn a_forged_sequence_number_does_not_drop_the_genuine_records() {
    let genuine_topic = unique_topic("src-genuine");
    let genuine = write_jpeg_frames(&genuine_topic, 10);
    assert_eq!(genuine.len(), 10);
    let as_record = |record: &Record, seq: Option<&str>| {
        let headers = record
            .headers
            .iter()
            .map(|(key, value)| match seq {
                Some(seq) if key == "gst-seq" => (key.clone(), seq.as_bytes().to_vec()),
                _ => (key.clone(), value.clone()),
            })
            .collect();
        (record.value.clone(), record.timestamp_ms, headers)
    };
    // A copy of the fifth record, with its stream id and seq = u64::MAX.
    let forged_seq = u64::MAX.to_string();
    let mut copied: Vec<_> = genuine.iter().map(|r| as_record(r, None)).collect();
    copied.insert(5, as_record(&genuine[4], Some(&forged_seq)));
    let topic = unique_topic("src-forged");
    create_topic(&topic, 1, &[]);
    produce_with_headers(&topic, &copied);

    let (pipeline, appsink) = source(&format!("topic={topic} start-from=earliest stop-at=end"));
    pipeline.set_state(gst::State::Playing).unwrap();
    let samples = pull_to_eos(&pipeline, &appsink);
    let stats = stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();

    // The forged record reads as a restart of the stream, and so does the
    // sixth genuine one after it: nothing is taken for a duplicate.
    let mut expected: Vec<Vec<u8>> = genuine.iter().map(|r| r.value.clone()).collect();
    expected.insert(5, genuine[4].value.clone());
    assert!(
        samples.iter().map(value).eq(expected.iter().cloned()),
        "{} buffers for 10 genuine records and 1 forged",
        samples.len()
    );
    assert_eq!(stats.get::<u64>("duplicates").unwrap(), 0);
    assert_eq!(stats.get::<u64>("stream-restarts").unwrap(), 2);
    assert!(
        samples[6]
            .buffer()
            .unwrap()
            .flags()
            .contains(gst::BufferFlags::DISCONT)
    );
}

#[test]
fn sequence_gaps_and_duplicates_are_counted() {
    let topic = unique_topic("src-seq");
    create_topic(&topic, 1, &[]);
    let producer = producer();
    for seq in ["0", "1", "1", "4", "5"] {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "gst-stream-id",
                value: Some("cam"),
            })
            .insert(Header {
                key: "gst-seq",
                value: Some(seq),
            });
        producer
            .send(
                BaseRecord::<(), _>::to(&topic)
                    .payload(seq)
                    .headers(headers),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let (pipeline, appsink) = source(&format!("topic={topic} start-from=earliest stop-at=end"));
    pipeline.set_state(gst::State::Playing).unwrap();
    let samples = pull_to_eos(&pipeline, &appsink);
    let stats = stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(
        samples.iter().map(value).collect::<Vec<_>>(),
        vec![b"0".to_vec(), b"1".to_vec(), b"4".to_vec(), b"5".to_vec()]
    );
    assert!(
        samples[2]
            .buffer()
            .unwrap()
            .flags()
            .contains(gst::BufferFlags::DISCONT)
    );
    assert!(
        !samples[3]
            .buffer()
            .unwrap()
            .flags()
            .contains(gst::BufferFlags::DISCONT)
    );
    assert_eq!(stats.get::<u64>("duplicates").unwrap(), 1);
    assert_eq!(stats.get::<u64>("sequence-gaps").unwrap(), 1);
    assert_eq!(stats.get::<u64>("lost-records").unwrap(), 2);
}

#[test]
fn missing_topic_and_bad_settings_are_clear_errors() {
    let cases = [
        (
            format!("topic={} wait-for-topic=false", unique_topic("src-none")),
            "does not exist",
        ),
        (
            "start-from=earliest".to_string(),
            "topic property is not set",
        ),
        (
            "topic=x start-from=committed".to_string(),
            "needs a group-id",
        ),
        (
            "topic=x start-from=timestamp start-time=yesterday".to_string(),
            "start-time",
        ),
        (
            "topic=x start-from=timestamp start-time=2026-02-31T00:00:00Z".to_string(),
            "start-time: \"2026-02-31T00:00:00Z\" is neither milliseconds since the epoch nor a valid ISO 8601 date-time",
        ),
        (
            "topic=x stop-at=timestamp stop-time=2026-11-25T13:00:00+0é00".to_string(),
            "stop-time: \"2026-11-25T13:00:00+0é00\" is neither",
        ),
        (
            "topic=x group-id=g partition=0".to_string(),
            "cannot be combined with group-id",
        ),
    ];
    for (properties, expected) in cases {
        let (pipeline, _) = source(&properties);
        let message = expect_error(run(&pipeline, TIMEOUT));
        assert!(message.contains(expected), "{properties}: {message}");
    }
}

#[test]
fn started_before_its_topic_it_waits_then_reads_every_record() {
    let topic = unique_topic("src-later");
    let (pipeline, appsink) = source(&format!("topic={topic}"));
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let warning = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(!remaining.is_zero(), "no warning about the missing topic");
        let Some(message) =
            bus.timed_pop(gst::ClockTime::from_mseconds(remaining.as_millis() as u64))
        else {
            continue;
        };
        match message.view() {
            gst::MessageView::Warning(w) => break w.error().message().to_string(),
            gst::MessageView::Error(err) => panic!("pipeline error: {err:?}"),
            _ => (),
        }
    };
    assert!(
        warning.contains(&topic) && warning.contains("waiting"),
        "{warning}"
    );
    assert!(stats(&pipeline).get::<bool>("waiting-for-topic").unwrap());

    // Produced right after the topic appears: start-from=latest still
    // reads them, since the whole topic is newer than the element.
    create_topic(&topic, 1, &[]);
    produce_timed(&topic, "later", &[unix_now_ms(); 5]);
    let received: Vec<Vec<u8>> = (0..5).map(|_| value(&pull(&appsink))).collect();
    assert_eq!(received, values("later", 0..5));
    assert!(!stats(&pipeline).get::<bool>("waiting-for-topic").unwrap());
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn max_lag_jumps_to_the_newest_records() {
    let topic = unique_topic("src-lag");
    create_topic(&topic, 1, &[]);
    let old = unix_now_ms() - 60_000;
    produce_timed(&topic, "old", &(0..50).map(|i| old + i).collect::<Vec<_>>());
    let (pipeline, appsink) = source(&format!(
        "topic={topic} start-from=earliest max-lag-ms=5000"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    // The backlog is a minute old: the source skips it and waits for new records.
    let src = pipeline.by_name("src").unwrap();
    assert!(wait_until(TIMEOUT, || src
        .property::<gst::Structure>("stats")
        .get::<u64>("skipped-lag")
        .unwrap()
        > 0));
    let now = unix_now_ms();
    produce_timed(&topic, "new", &[now, now + 1]);
    let first = pull(&appsink);
    assert_eq!(value(&first), b"new-0");
    assert!(
        first
            .buffer()
            .unwrap()
            .flags()
            .contains(gst::BufferFlags::DISCONT)
    );
    let stats = stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(stats.get::<u64>("skipped-lag").unwrap(), 50);
}

#[test]
fn consumer_lag_counts_the_records_behind() {
    let topic = unique_topic("src-consumer-lag");
    create_topic(&topic, 1, &[]);
    produce_plain(&topic, &values("l", 0..20));
    let (pipeline, appsink) = source(&format!("topic={topic} start-from=earliest"));
    // One buffer at a time: the source waits with 19 records behind it.
    appsink.set_max_buffers(1);
    pipeline.set_state(gst::State::Playing).unwrap();
    assert_eq!(value(&pull(&appsink)), b"l-0");
    let src = pipeline.by_name("src").unwrap();
    let lag = || {
        src.property::<gst::Structure>("stats")
            .get::<i64>("consumer-lag")
            .unwrap()
    };
    assert!(wait_until(TIMEOUT, || lag() > 0));
    assert!(lag() <= 19, "{}", lag());
    for i in 1..20 {
        assert_eq!(value(&pull(&appsink)), format!("l-{i}").into_bytes());
    }
    assert!(wait_until(TIMEOUT, || lag() == 0), "{}", lag());
    pipeline.set_state(gst::State::Null).unwrap();
}

/// A broker of one test alone (not this binary's shared one: the test
/// freezes it) with a one-partition topic holding `records`: values, each
/// with its age in ms when written.
fn own_broker_with_records(name: &str, records: &[(String, i64)]) -> (common::OwnBroker, String) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;

    let broker = common::OwnBroker::start();
    let topic = unique_topic(name);
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &broker.bootstrap);
    let admin: AdminClient<DefaultClientContext> = config.create().unwrap();
    let created = runtime().block_on(admin.create_topics(
        [&NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ));
    created.unwrap().pop().unwrap().unwrap();
    let producer: BaseProducer = config.create().unwrap();
    let now = unix_now_ms();
    for (value, age_ms) in records {
        producer
            .send(
                BaseRecord::<(), _>::to(&topic)
                    .payload(value)
                    .timestamp(now - age_ms),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    (broker, topic)
}

#[test]
fn stats_and_stop_do_not_wait_behind_a_frozen_broker() {
    // Three current records, then a minute-old backlog that max-lag-ms
    // makes the source skip, asking the broker for its end offset.
    let records: Vec<(String, i64)> = (0..3)
        .map(|_| 0)
        .chain((0..50).map(|_| 60_000))
        .enumerate()
        .map(|(i, timestamp)| (format!("r-{i}"), timestamp))
        .collect();
    let (broker, topic) = own_broker_with_records("src-frozen", &records);

    // Twice: once resumed, to show the source was waiting on the broker for
    // the backlog's end offset; once stopped while still waiting.
    for resume_first in [true, false] {
        let pipeline = launch(&format!(
            "kafkasrc name=src bootstrap-servers={} topic={topic} start-from=earliest \
             max-lag-ms=5000 connect-timeout-ms=20000 ! appsink name=out sync=false max-buffers=1",
            broker.bootstrap
        ));
        let appsink = appsink_of(&pipeline);
        pipeline.set_state(gst::State::Playing).unwrap();
        // The first fetch brought every record; the source waits on the full appsink.
        assert_eq!(value(&pull(&appsink)), b"r-0");
        broker.node("pause-node");
        assert_eq!(value(&pull(&appsink)), b"r-1");
        assert_eq!(value(&pull(&appsink)), b"r-2");
        // Next is the backlog: the source asks the frozen broker for offsets.
        let src = pipeline.by_name("src").unwrap();
        let watching = Instant::now();
        while watching.elapsed() < Duration::from_secs(3) {
            let asked = Instant::now();
            let stats = src.property::<gst::Structure>("stats");
            assert!(
                asked.elapsed() < Duration::from_millis(500),
                "a stats read took {:?} behind the frozen broker",
                asked.elapsed()
            );
            assert_eq!(stats.get::<u64>("buffers-pushed").unwrap(), 3);
            assert_eq!(stats.get::<u64>("skipped-lag").unwrap(), 0);
        }
        if resume_first {
            broker.node("resume-node");
            assert!(
                wait_until(TIMEOUT, || src
                    .property::<gst::Structure>("stats")
                    .get::<u64>("skipped-lag")
                    .unwrap()
                    == 50),
                "the backlog was not skipped once the broker was back"
            );
            pipeline.set_state(gst::State::Null).unwrap();
            continue;
        }
        let stopping = Instant::now();
        pipeline.set_state(gst::State::Null).unwrap();
        let stop_took = stopping.elapsed();
        broker.node("resume-node");
        assert!(
            stop_took < Duration::from_secs(2),
            "NULL took {stop_took:?}"
        );
    }
    broker.stop();
}

#[test]
fn null_with_a_group_returns_behind_a_frozen_broker() {
    let records: Vec<(String, i64)> = (0..3).map(|i| (format!("g-{i}"), 0)).collect();
    let (broker, topic) = own_broker_with_records("src-frozen-group", &records);
    let pipeline = launch(&format!(
        "kafkasrc name=src bootstrap-servers={} topic={topic} group-id={topic} start-from=earliest \
         ! appsink name=out sync=false",
        broker.bootstrap
    ));
    let appsink = appsink_of(&pipeline);
    pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..3 {
        assert_eq!(value(&pull(&appsink)), format!("g-{i}").into_bytes());
    }
    // The final commit and leaving the group wait for a broker that does
    // not answer: NULL must not.
    broker.node("pause-node");
    let stopping = Instant::now();
    pipeline.set_state(gst::State::Null).unwrap();
    let stop_took = stopping.elapsed();
    broker.node("resume-node");
    broker.stop();
    assert!(
        stop_took < Duration::from_secs(8),
        "NULL took {stop_took:?}"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The chunk records of frame `seq` of `stream` cut in `pieces`, as
/// kafkasink writes them (docs/wire-format.md), chunk `i` stamped
/// `timestamp(i)`.
fn chunk_records(
    stream: &str,
    seq: u64,
    frame: &[u8],
    pieces: usize,
    timestamp: impl Fn(usize) -> i64,
) -> Vec<Produced> {
    let values: Vec<&[u8]> = frame.chunks(frame.len().div_ceil(pieces)).collect();
    let count = values.len();
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            let mut headers = vec![
                ("gst-version", "2".to_string()),
                ("gst-stream-id", stream.to_string()),
                ("gst-seq", seq.to_string()),
                ("gst-chunk-index", index.to_string()),
                ("gst-chunk-count", count.to_string()),
                ("gst-frame-size", frame.len().to_string()),
            ];
            if index == 0 {
                headers.push(("gst-caps", "application/octet-stream".to_string()));
                headers.push(("gst-pts", (seq * 1_000_000_000).to_string()));
            }
            let headers = headers
                .into_iter()
                .map(|(key, value)| (key.to_string(), value.into_bytes()))
                .collect();
            (value.to_vec(), Some(timestamp(index)), headers)
        })
        .collect()
}

/// A whole record of frame `seq` of `stream`, as kafkasink writes it.
fn whole_record(stream: &str, seq: u64, frame: &[u8], timestamp: i64) -> Produced {
    let headers = [
        ("gst-version", "1".to_string()),
        ("gst-stream-id", stream.to_string()),
        ("gst-seq", seq.to_string()),
        ("gst-caps", "application/octet-stream".to_string()),
        ("gst-pts", (seq * 1_000_000_000).to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.into_bytes()))
    .collect();
    (frame.to_vec(), Some(timestamp), headers)
}

fn stat(stats: &gst::Structure, field: &str) -> u64 {
    stats.get::<u64>(field).unwrap()
}

#[test]
fn frames_over_a_1_mb_topic_limit_come_out_byte_identical() {
    let topic = unique_topic("src-chunked");
    create_topic(&topic, 1, &[("max.message.bytes", "1048576")]);
    let frames: Vec<Vec<u8>> = [3_000_000, 20_000, 3_500_000, 1_048_576, 5000]
        .iter()
        .enumerate()
        .map(|(i, len)| random_bytes(*len, 100 + i as u64))
        .collect();
    let writer = launch(&format!(
        "appsrc name=src format=time caps=application/octet-stream \
         ! kafkasink topic={topic} bootstrap-servers={}",
        bootstrap()
    ));
    let appsrc = element::<gst_app::AppSrc>(&writer, "src");
    writer.set_state(gst::State::Playing).unwrap();
    for (i, frame) in frames.iter().enumerate() {
        let mut buffer = gst::Buffer::from_mut_slice(frame.clone());
        let buffer_ref = buffer.get_mut().unwrap();
        buffer_ref.set_pts(gst::ClockTime::from_mseconds(i as u64 * 40));
        buffer_ref.set_duration(gst::ClockTime::from_mseconds(40));
        appsrc.push_buffer(buffer).unwrap();
    }
    appsrc.end_of_stream().unwrap();
    assert!(matches!(
        wait_end(&writer.bus().unwrap(), TIMEOUT),
        End::Eos
    ));
    writer.set_state(gst::State::Null).unwrap();
    // 3 + 1 + 4 + 2 + 1 records.
    assert_eq!(record_count(&topic), 11);

    let (samples, warnings, stats) = read_to_eos(&format!(
        "topic={topic} start-from=earliest stop-at=end timestamp-mode=original"
    ));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(samples.len(), frames.len());
    // Where each frame starts: 3 + 1 + 4 + 2 + 1 records.
    let first_offsets = [0i64, 3, 4, 8, 10];
    for (i, (sample, frame)) in samples.iter().zip(&frames).enumerate() {
        assert!(&value(sample) == frame, "frame {i} differs");
        let buffer = sample.buffer().unwrap();
        let meta = gst::meta::CustomMeta::from_buffer(buffer, "GstKafkaRecordMeta").unwrap();
        assert_eq!(
            meta.structure().get::<i64>("offset").unwrap(),
            first_offsets[i]
        );
        assert_eq!(buffer.offset(), first_offsets[i] as u64);
        assert_eq!(
            buffer.pts(),
            Some(gst::ClockTime::from_mseconds(i as u64 * 40))
        );
        assert_eq!(buffer.duration(), Some(gst::ClockTime::from_mseconds(40)));
        assert_eq!(
            sample.caps().unwrap(),
            &gst::Caps::new_empty_simple("application/octet-stream")
        );
    }
    assert_eq!(stat(&stats, "frames-reassembled"), 3);
    assert_eq!(stat(&stats, "buffers-pushed"), 5);
    assert_eq!(stat(&stats, "records-received"), 11);
    assert_eq!(stat(&stats, "incomplete-frames"), 0);
    assert_eq!(stat(&stats, "partial-bytes"), 0);
    assert_eq!(stat(&stats, "sequence-gaps"), 0);
}

#[test]
fn two_writers_interleaving_chunks_on_one_partition_are_told_apart() {
    let topic = unique_topic("src-interleaved");
    create_topic(&topic, 1, &[]);
    let base = 1_795_000_000_000i64;
    let a: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(30_000, 10 + i)).collect();
    let b: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(20_000, 20 + i)).collect();
    let mut records = Vec::new();
    for seq in 0..3 {
        let ts = base + seq as i64 * 1000;
        let mut of_a = chunk_records("cam-a", seq, &a[seq as usize], 3, |_| ts).into_iter();
        let mut of_b = chunk_records("cam-b", seq, &b[seq as usize], 2, |_| ts + 1).into_iter();
        // a0 b0 a1 c b1 a2: the other writer and a third, whole one, in
        // the middle of each frame.
        records.extend(of_a.next());
        records.extend(of_b.next());
        records.extend(of_a.next());
        records.push(whole_record("cam-c", seq, b"small", ts + 2));
        records.extend(of_b.next());
        records.extend(of_a.next());
    }
    produce_with_headers(&topic, &records);

    let (samples, warnings, stats) =
        read_to_eos(&format!("topic={topic} start-from=earliest stop-at=end"));
    assert!(warnings.is_empty(), "{warnings:?}");
    let out: Vec<Vec<u8>> = samples.iter().map(value).collect();
    let mut expect = Vec::new();
    for seq in 0..3 {
        // In the order each frame was completed.
        expect.extend([b"small".to_vec(), b[seq].clone(), a[seq].clone()]);
    }
    assert!(
        out == expect,
        "frames mixed up: {:?}",
        out.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(stat(&stats, "frames-reassembled"), 6);
    assert_eq!(stat(&stats, "incomplete-frames"), 0);
    assert_eq!(stat(&stats, "sequence-gaps"), 0);
}

/// Frames 0..5 of 3 chunks each, one second apart from `base`; frame 2's
/// chunks stamped 1 ms apart, as a writer that stamps each chunk would.
fn produce_timed_chunked(topic: &str, base: i64) -> Vec<Vec<u8>> {
    let frames: Vec<Vec<u8>> = (0..5).map(|i| random_bytes(9000, 40 + i)).collect();
    let mut records = Vec::new();
    for (seq, frame) in frames.iter().enumerate() {
        let ts = base + seq as i64 * 1000;
        let spread = if seq == 2 { 1 } else { 0 };
        records.extend(chunk_records("cam", seq as u64, frame, 3, |i| {
            ts + spread * i as i64
        }));
    }
    produce_with_headers(topic, &records);
    frames
}

#[test]
fn a_start_time_inside_a_chunked_frame_starts_at_the_next_frame() {
    let topic = unique_topic("src-chunk-start");
    create_topic(&topic, 1, &[]);
    let base = 1_795_000_000_000i64;
    let frames = produce_timed_chunked(&topic, base);
    // Between frames: the next frame's chunk 0, nothing skipped. At frame
    // 2's second chunk: the rest of frame 2 is skipped, not lost.
    for (start, first, skipped) in [(base + 500, 1, 0), (base + 2001, 3, 2)] {
        let (samples, warnings, stats) = read_to_eos(&format!(
            "topic={topic} start-from=timestamp start-time={start} stop-at=end"
        ));
        assert!(warnings.is_empty(), "{warnings:?}");
        let out: Vec<Vec<u8>> = samples.iter().map(value).collect();
        assert!(
            out == frames[first..],
            "start {start}: {} frames",
            out.len()
        );
        assert_eq!(stat(&stats, "chunks-skipped"), skipped, "start {start}");
        assert_eq!(stat(&stats, "incomplete-frames"), 0, "start {start}");
    }
}

#[test]
fn a_seek_inside_a_chunked_frame_lands_on_the_next_frame() {
    let topic = unique_topic("src-chunk-seek");
    create_topic(&topic, 1, &[]);
    let base = 1_795_000_000_000i64;
    let frames = produce_timed_chunked(&topic, base);
    let (pipeline, appsink) = source(&format!(
        "topic={topic} start-from=earliest timestamp-mode=original"
    ));
    appsink.set_max_buffers(1);
    pipeline.set_state(gst::State::Paused).unwrap();
    pipeline.state(gst::ClockTime::from_seconds(30)).0.unwrap();
    let first = appsink
        .try_pull_preroll(gst::ClockTime::from_seconds(10))
        .unwrap();
    assert!(value(&first) == frames[0]);
    // 2.001 s in: frame 2's second chunk.
    pipeline
        .seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::from_mseconds(2001))
        .unwrap();
    pipeline.state(gst::ClockTime::from_seconds(30)).0.unwrap();
    let landed = appsink
        .try_pull_preroll(gst::ClockTime::from_seconds(10))
        .unwrap();
    assert!(value(&landed) == frames[3], "landed elsewhere than frame 3");
    assert_eq!(
        landed.buffer().unwrap().pts(),
        Some(gst::ClockTime::from_seconds(3))
    );
    let stats = stats(&pipeline);
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(stat(&stats, "chunks-skipped"), 2);
    assert_eq!(stat(&stats, "incomplete-frames"), 0);
}

#[test]
fn partial_frames_are_held_within_max_partial_bytes() {
    let topic = unique_topic("src-partial-bound");
    create_topic(&topic, 1, &[]);
    let base = 1_795_000_000_000i64;
    // One frame of 150 kB, then two writers' 60 kB frames interleaved: with
    // 100 kB allowed, the large one is never started, and the older of the
    // two is pushed out when the newer starts.
    let a = random_bytes(60_000, 1);
    let b = random_bytes(60_000, 2);
    let large = random_bytes(150_000, 3);
    let c = random_bytes(60_000, 4);
    let mut of_a = chunk_records("cam-a", 0, &a, 2, |_| base).into_iter();
    let mut of_b = chunk_records("cam-b", 0, &b, 2, |_| base).into_iter();
    let mut records = chunk_records("cam-d", 0, &large, 3, |_| base);
    records.extend(of_a.next());
    records.extend(of_b.next());
    records.extend(of_a.next());
    records.extend(of_b.next());
    records.extend(chunk_records("cam-c", 0, &c, 2, |_| base));
    produce_with_headers(&topic, &records);

    let (samples, warnings, stats) = read_to_eos(&format!(
        "topic={topic} start-from=earliest stop-at=end max-partial-bytes=100000"
    ));
    let out: Vec<Vec<u8>> = samples.iter().map(value).collect();
    assert!(out == [b.clone(), c.clone()], "{} frames", out.len());
    assert_eq!(stat(&stats, "incomplete-frames"), 2);
    assert_eq!(stat(&stats, "partial-bytes"), 0);
    // The first warning names the frame; the second, within a second, is
    // held back and counted at EOS (unless the reader took over a second).
    assert!(
        warnings[0].contains("frame 0 of stream cam-d")
            && warnings[0].contains("larger than max-partial-bytes"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("1 more incomplete chunked frame")
            || (warnings[1].contains("stream cam-a")
                && warnings[1].contains("raise max-partial-bytes")),
        "{warnings:?}"
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn a_sink_killed_mid_frame_leaves_no_partial_frame() {
    let topic = unique_topic("src-sink-killed");
    // 100 kB records: a 1280x720 RGB frame (2.7 MB) is 28 chunks, which a
    // producer holding one record at a time and lingering 50 ms on each
    // takes over a second to write.
    create_topic(&topic, 1, &[("max.message.bytes", "100000")]);
    let mut sink = Process(
        std::process::Command::new("gst-launch-1.0")
            .args(
                format!(
                    "-q videotestsrc num-buffers=3 ! video/x-raw,format=RGB,width=1280,height=720 \
                     ! kafkasink topic={topic} bootstrap-servers={} linger-ms=50 \
                     config=config,queue.buffering.max.messages=1",
                    bootstrap()
                )
                .split_whitespace(),
            )
            .env("GST_PLUGIN_PATH", plugin_dir())
            .spawn()
            .unwrap(),
    );
    // Killed once the first frame and part of the second are in the topic.
    let frame_records = 28usize;
    assert!(
        wait_until(TIMEOUT, || record_count(&topic) > frame_records as i64 + 2),
        "the sink wrote {} records",
        record_count(&topic)
    );
    // SAFETY: a signal to our own child.
    unsafe {
        libc::kill(sink.0.id() as i32, libc::SIGKILL);
    }
    let _ = sink.0.wait();
    let written = read_topic(&topic);
    assert!(
        written.len() < 2 * frame_records,
        "killed too late: {} records",
        written.len()
    );
    assert_eq!(
        written[0].header("gst-chunk-count"),
        Some(frame_records.to_string().as_str())
    );
    let first_frame: Vec<u8> = written[..frame_records]
        .iter()
        .flat_map(|record| record.value.clone())
        .collect();

    let (samples, warnings, stats) =
        read_to_eos(&format!("topic={topic} start-from=earliest stop-at=end"));
    assert_eq!(samples.len(), 1);
    assert!(value(&samples[0]) == first_frame);
    assert_eq!(value(&samples[0]).len(), 1280 * 720 * 3);
    // The second frame is cut by the end of the range read, which cannot
    // tell a writer killed from one still writing: not counted as a loss.
    assert_eq!(stat(&stats, "incomplete-frames"), 0);
    assert_eq!(stat(&stats, "frames-cut-at-end"), 1);
    assert_eq!(stat(&stats, "partial-bytes"), 0);
    assert_eq!(stat(&stats, "buffers-pushed"), 1);
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// The offset group `group` committed in partition 0 of `topic`.
fn committed_offset(group: &str, topic: &str) -> Option<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .ok()?;
    match committed.elements().first()?.offset() {
        rdkafka::Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

#[test]
fn a_frame_whose_writer_died_is_given_up_once_its_partition_moves_on() {
    let topic = unique_topic("src-partial-age");
    let group = unique_topic("group");
    create_topic(&topic, 1, &[]);
    let base = unix_now_ms() - 60_000;
    // cam-dead wrote chunk 0 of a frame of three and died; cam-live goes
    // on, a second apart. With 2 s allowed, the frame is given up at
    // cam-live's record stamped 3 s after it.
    let dead = random_bytes(3000, 1);
    let mut records = chunk_records("cam-dead", 0, &dead, 3, |_| base);
    records.truncate(1);
    let live: Vec<Vec<u8>> = (0..6).map(|seq| random_bytes(1000, 10 + seq)).collect();
    for (seq, frame) in live.iter().enumerate() {
        records.push(whole_record(
            "cam-live",
            seq as u64,
            frame,
            base + 1000 * seq as i64,
        ));
    }
    produce_with_headers(&topic, &records);

    let (pipeline, appsink) = source(&format!(
        "topic={topic} group-id={group} start-from=earliest max-partial-age-ms=2000"
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let out: Vec<Vec<u8>> = (0..live.len()).map(|_| value(&pull(&appsink))).collect();
    assert!(out == live);
    let stats = stats(&pipeline);
    assert_eq!(stat(&stats, "incomplete-frames"), 1, "{stats}");
    assert_eq!(stat(&stats, "partial-bytes"), 0, "{stats}");
    // The commit is no longer held at the dead frame's chunk 0 (offset 0):
    // it follows the last record pushed.
    assert!(
        wait_until(TIMEOUT, || committed_offset(&group, &topic) == Some(7)),
        "committed {:?}",
        committed_offset(&group, &topic)
    );
    let bus = pipeline.bus().unwrap();
    let warning = bus
        .iter_filtered(&[gst::MessageType::Warning])
        .find_map(|message| match message.view() {
            gst::MessageView::Warning(warning) => Some(warning.error().to_string()),
            _ => None,
        });
    pipeline.set_state(gst::State::Null).unwrap();
    let warning = warning.unwrap_or_default();
    assert!(
        warning.contains("frame 0 of stream cam-dead") && warning.contains("max-partial-age-ms"),
        "{warning}"
    );
}

// SPDX-License-Identifier: MPL-2.0

//! The record engine without a broker: unit tests of each decision, and
//! property tests over arbitrary record sequences.

use super::*;
use proptest::prelude::*;

/// 2026-11-18T11:06:40Z.
const T0: i64 = 1_795_000_000_000;
const FRAME_NS: u64 = 33_333_333;
/// 600 years of ms.
const SIX_CENTURIES_MS: i64 = 600 * 365 * 86_400 * 1000;

/// A record owning its bytes; `view()` lends it to the engine.
#[derive(Debug, Clone)]
struct Owned {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

type HeaderIter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, Option<Vec<u8>>)>,
    fn(&'a (String, Option<Vec<u8>>)) -> (&'a str, Option<&'a [u8]>),
>;

impl Owned {
    fn plain(offset: i64, timestamp_ms: Option<i64>, payload: &[u8]) -> Owned {
        Owned {
            partition: 0,
            offset,
            timestamp_ms,
            key: None,
            payload: payload.to_vec(),
            headers: Vec::new(),
        }
    }

    /// A record as kafkasink writes it: frame `seq` of `stream`.
    fn framed(stream: &str, seq: u64, delta: bool) -> Owned {
        // Sequence numbers near u64::MAX get wrapped-around times.
        let frame = seq % 1_000_000;
        let mut record = Owned::plain(
            seq as i64,
            Some(T0 + frame as i64 * 33),
            format!("{stream}/{seq}").as_bytes(),
        );
        record.header("gst-version", "1");
        record.header("gst-caps", "image/jpeg, width=(int)160, height=(int)120");
        record.header("gst-stream-id", stream);
        record.header("gst-seq", &seq.to_string());
        record.header("gst-pts", &(frame * FRAME_NS).to_string());
        record.header("gst-duration", &FRAME_NS.to_string());
        if delta {
            record.header("gst-flags", "delta-unit");
        }
        record
    }

    /// Frame `seq` of `stream` as kafkasink writes it when it is over the
    /// record limit: `pieces` chunk records (at offsets from `seq`), whose
    /// values add up to [`Owned::frame_bytes`].
    fn chunked(stream: &str, seq: u64, delta: bool, pieces: usize) -> Vec<Owned> {
        let whole = Owned::framed(stream, seq, delta);
        let bytes = Owned::frame_bytes(stream, seq);
        let chunk_len = bytes.len().div_ceil(pieces);
        let values: Vec<&[u8]> = bytes.chunks(chunk_len).collect();
        let count = values.len();
        values
            .into_iter()
            .enumerate()
            .map(|(index, value)| {
                let mut record = Owned::plain(whole.offset, whole.timestamp_ms, value);
                record.header("gst-version", "2");
                record.header("gst-stream-id", stream);
                record.header("gst-seq", &seq.to_string());
                record.header("gst-chunk-index", &index.to_string());
                record.header("gst-chunk-count", &count.to_string());
                record.header("gst-frame-size", &bytes.len().to_string());
                if index == 0 {
                    for (key, value) in &whole.headers {
                        if !matches!(key.as_str(), "gst-version" | "gst-stream-id" | "gst-seq") {
                            record.headers.push((key.clone(), value.clone()));
                        }
                    }
                }
                record
            })
            .collect()
    }

    fn frame_bytes(stream: &str, seq: u64) -> Vec<u8> {
        format!("{stream}/{seq}|").repeat(16).into_bytes()
    }

    fn header(&mut self, key: &str, value: &str) {
        self.headers
            .retain(|(existing, _)| existing.as_str() != key);
        self.headers
            .push((key.to_string(), Some(value.as_bytes().to_vec())));
    }

    fn view(&self) -> Record<'_, HeaderIter<'_>> {
        Record {
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: self.key.as_deref(),
            payload: &self.payload,
            headers: self
                .headers
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_deref())),
        }
    }
}

fn config(original_timestamps: bool) -> Config {
    gst::init().unwrap();
    Config {
        key: None,
        default_caps: gst::Caps::builder("image/jpeg").build(),
        original_timestamps,
        stop_at_end: false,
        stop_time_ms: None,
        partitions: vec![0],
        max_partial_bytes: crate::kafkasrc::reassembly::DEFAULT_MAX_PARTIAL_BYTES,
    }
}

fn engine(original_timestamps: bool) -> Engine {
    Engine::new(config(original_timestamps), HashMap::new())
}

fn pushed(decision: Decision) -> Push {
    match decision {
        Decision::Push(push) => push,
        other => panic!("expected a push, got {other:?}"),
    }
}

fn pts(push: &Push) -> Option<gst::ClockTime> {
    match push.timing {
        Timing::Original { pts, .. } => pts,
        Timing::Live => panic!("live timing"),
    }
}

#[test]
fn a_record_six_centuries_ahead_is_bad_and_the_stream_goes_on() {
    let mut engine = engine(true);
    let now = T0 + 10_000;
    let records = [
        Owned::plain(0, Some(T0), b"first"),
        Owned::plain(1, Some(T0 + SIX_CENTURIES_MS), b"future"),
        Owned::plain(2, Some(T0 + 2000), b"third"),
    ];
    let first = pushed(engine.process(records[0].view(), now));
    assert_eq!(pts(&first), Some(gst::ClockTime::ZERO));
    assert_eq!(
        engine.process(records[1].view(), now),
        Decision::Skip(Skip::Bad(BadRecord::Timestamp(T0 + SIX_CENTURIES_MS)))
    );
    let third = pushed(engine.process(records[2].view(), now));
    assert_eq!(pts(&third), Some(gst::ClockTime::from_seconds(2)));
    assert_eq!(engine.counters().bad_records, 1);
    assert_eq!(engine.counters().buffers_pushed, 2);
}

#[test]
fn timestamps_at_the_integer_limits_neither_panic_nor_wrap() {
    for original in [false, true] {
        let mut engine = engine(original);
        for (offset, ts) in [
            (0, Some(T0)),
            (1, Some(i64::MAX)),
            (2, Some(i64::MIN)),
            (3, Some(-1)),
            (4, None),
            (5, Some(18_446_744_073_709)),
            (6, Some(18_446_744_073_710)),
        ] {
            for now in [i64::MIN, 0, T0, i64::MAX] {
                let decision = engine.process(Owned::plain(offset, ts, b"x").view(), now);
                if let Decision::Push(push) = decision {
                    // Every time handed on is a real time, never NONE.
                    assert!(
                        push.capture_time
                            .is_none_or(|d| d.as_nanos() < u64::MAX as u128)
                    );
                }
            }
        }
        let counters = engine.counters();
        assert!(counters.latency_max_ms >= counters.latency_last_ms);
        if original {
            // i64::MAX, i64::MIN, -1 and one ms past 2554 cannot be placed.
            assert_eq!(counters.bad_records, 4 * 4);
        } else {
            assert_eq!(counters.bad_records, 0);
            assert_eq!(counters.buffers_pushed, 7 * 4);
        }
    }
}

#[test]
fn the_anchor_comes_from_a_pushed_record() {
    let mut engine = engine(true);
    // Skipped records (here before the first keyframe) do not anchor.
    let mut early = Owned::framed("cam", 0, true);
    early.timestamp_ms = Some(T0 - 60_000);
    assert_eq!(
        engine.process(early.view(), T0),
        Decision::Skip(Skip::BeforeKeyframe)
    );
    assert!(!engine.is_anchored());
    let mut engine = Engine::new(config(true), HashMap::new());
    pushed(engine.process(Owned::framed("cam", 0, false).view(), T0));
    assert!(engine.is_anchored());
    let next = pushed(engine.process(Owned::framed("cam", 1, false).view(), T0));
    assert_eq!(pts(&next), Some(gst::ClockTime::from_nseconds(FRAME_NS)));
    assert_eq!(
        engine.seek_target_ms(gst::ClockTime::from_seconds(1)),
        Some(T0 + 1000)
    );
    assert_eq!(
        engine.seek_target_ms(gst::ClockTime::MAX),
        Some(T0 + 18_446_744_073_709)
    );
}

#[test]
fn gaps_duplicates_and_discont() {
    let mut engine = engine(false);
    let mut discont = Vec::new();
    for seq in [0, 1, 1, 4, 5] {
        match engine.process(Owned::framed("cam", seq, false).view(), T0) {
            Decision::Push(push) => {
                discont.push((seq, push.flags.contains(gst::BufferFlags::DISCONT)))
            }
            Decision::Skip(Skip::Duplicate) => assert_eq!(seq, 1),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(discont, [(0, true), (1, false), (4, true), (5, false)]);
    let counters = engine.counters();
    assert_eq!(
        (
            counters.duplicates,
            counters.sequence_gaps,
            counters.lost_records
        ),
        (1, 1, 2)
    );
}

#[test]
fn sequence_numbers_at_u64_max() {
    let mut engine = engine(false);
    for seq in [u64::MAX - 1, u64::MAX] {
        pushed(engine.process(Owned::framed("cam", seq, false).view(), T0));
    }
    assert_eq!(
        engine.process(Owned::framed("cam", u64::MAX, false).view(), T0),
        Decision::Skip(Skip::Duplicate)
    );
    // Back to 0: a restarted stream, not 2^64 - 1 duplicates.
    let restarted = pushed(engine.process(Owned::framed("cam", 0, false).view(), T0));
    assert!(restarted.flags.contains(gst::BufferFlags::DISCONT));
    assert_eq!(engine.counters().stream_restarts, 1);
    assert_eq!(engine.counters().lost_records, 0);
}

#[test]
fn a_forged_u64_max_seq_does_not_silence_the_genuine_stream() {
    let mut engine = engine(true);
    let genuine: Vec<Owned> = (0..10)
        .map(|seq| Owned::framed("cam", seq, false))
        .collect();
    let mut forged = genuine[4].clone();
    forged.header("gst-seq", &u64::MAX.to_string());
    let mut out = Vec::new();
    for record in genuine[..5].iter().chain([&forged]).chain(&genuine[5..]) {
        if let Decision::Push(_) = engine.process(record.view(), T0) {
            out.push(record.payload.clone());
        }
    }
    let mut expected: Vec<Vec<u8>> = genuine.iter().map(|r| r.payload.clone()).collect();
    // The forged record itself is a restart of the stream: pushed once.
    expected.insert(5, forged.payload.clone());
    assert_eq!(out, expected);
    assert_eq!(engine.counters().duplicates, 0);
    assert_eq!(engine.counters().stream_restarts, 2);
}

#[test]
fn jumps_up_to_the_threshold_are_gaps_beyond_it_restarts() {
    let mut engine = engine(false);
    pushed(engine.process(Owned::framed("cam", 0, false).view(), T0));
    pushed(engine.process(Owned::framed("cam", MAX_SEQ_JUMP, false).view(), T0));
    assert_eq!(engine.counters().sequence_gaps, 1);
    assert_eq!(engine.counters().lost_records, MAX_SEQ_JUMP - 1);
    pushed(engine.process(Owned::framed("cam", 2 * MAX_SEQ_JUMP + 1, false).view(), T0));
    assert_eq!(engine.counters().sequence_gaps, 1);
    assert_eq!(engine.counters().stream_restarts, 1);
}

#[test]
fn a_forged_high_sequence_number_costs_at_most_the_duplicate_window() {
    // A forged copy just inside the jump threshold: a gap, not a restart.
    let mut engine = engine(false);
    for seq in 2000..2005 {
        pushed(engine.process(Owned::framed("cam", seq, false).view(), T0));
    }
    pushed(engine.process(Owned::framed("cam", 2004 + MAX_SEQ_JUMP, false).view(), T0));
    // Every genuine record after it still comes out, in order: far behind
    // the forged number, the first one is a restart of the stream.
    for seq in 2005..2050 {
        pushed(engine.process(Owned::framed("cam", seq, false).view(), T0));
    }
    assert_eq!(engine.counters().duplicates, 0);
    assert_eq!(engine.counters().stream_restarts, 1);
    // A redelivery within the window is still a duplicate.
    assert!(matches!(
        engine.process(
            Owned::framed("cam", 2049 - DUPLICATE_WINDOW + 1, false).view(),
            T0
        ),
        Decision::Skip(Skip::Duplicate)
    ));
}

#[test]
fn tracked_streams_are_bounded_and_the_busy_ones_kept() {
    let mut engine = engine(false);
    let mut seq = 0;
    for i in 0..5 * MAX_TRACKS {
        pushed(engine.process(Owned::framed(&format!("forged-{i}"), 0, false).view(), T0));
        if i % 100 == 0 {
            pushed(engine.process(Owned::framed("cam", seq, false).view(), T0));
            seq += 1;
        }
        assert!(engine.tracked_streams() <= MAX_TRACKS);
    }
    assert_eq!(engine.tracked_streams(), MAX_TRACKS);
    // "cam" was used recently: still tracked, its old records still duplicates.
    assert_eq!(
        engine.process(Owned::framed("cam", 0, false).view(), T0),
        Decision::Skip(Skip::Duplicate)
    );
    // The first forged stream was forgotten: it counts as new.
    pushed(engine.process(Owned::framed("forged-0", 0, false).view(), T0));
}

#[test]
fn delta_units_wait_for_a_keyframe() {
    let mut engine = engine(false);
    for seq in 0..3 {
        assert_eq!(
            engine.process(Owned::framed("h264", seq, true).view(), T0),
            Decision::Skip(Skip::BeforeKeyframe)
        );
    }
    let key = pushed(engine.process(Owned::framed("h264", 3, false).view(), T0));
    assert!(key.flags.contains(gst::BufferFlags::DISCONT));
    let delta = pushed(engine.process(Owned::framed("h264", 4, true).view(), T0));
    assert_eq!(delta.flags, gst::BufferFlags::DELTA_UNIT);
    assert_eq!(engine.counters().skipped_to_keyframe, 3);
}

#[test]
fn caps_are_handed_on_when_they_change_and_only_by_pushed_records() {
    let mut engine = engine(false);
    let first = pushed(engine.process(Owned::framed("cam", 0, false).view(), T0));
    assert_eq!(
        first.caps.unwrap().to_string(),
        "image/jpeg, width=(int)160, height=(int)120"
    );
    assert_eq!(
        pushed(engine.process(Owned::framed("cam", 1, false).view(), T0)).caps,
        None
    );

    // A duplicate with new caps is skipped: the change waits for a pushed one.
    let mut duplicate = Owned::framed("cam", 1, false);
    duplicate.header("gst-caps", "image/jpeg, width=(int)320, height=(int)240");
    assert_eq!(
        engine.process(duplicate.view(), T0),
        Decision::Skip(Skip::Duplicate)
    );
    let mut resized = Owned::framed("cam", 2, false);
    resized.header("gst-caps", "image/jpeg, width=(int)320, height=(int)240");
    assert!(pushed(engine.process(resized.view(), T0)).caps.is_some());

    // Caps that do not parse: bad, and no sequence number is taken.
    let mut broken = Owned::framed("cam", 3, false);
    broken.header("gst-caps", "not caps ((");
    assert!(matches!(
        engine.process(broken.view(), T0),
        Decision::Skip(Skip::Bad(BadRecord::Caps(_)))
    ));
    let next = pushed(engine.process(Owned::framed("cam", 3, false).view(), T0));
    assert!(next.caps.is_some());

    // A plain record: back to the default caps.
    let plain = pushed(engine.process(Owned::plain(9, Some(T0), b"p").view(), T0));
    assert_eq!(plain.caps.unwrap().to_string(), "image/jpeg");
}

#[test]
fn caps_gstreamer_would_complain_about_are_refused_before_parsing() {
    for text in [
        "1",
        " 1",
        "image/jpeg;1",
        "a; 1",
        "_a",
        "/a",
        "ANY;1",
        "a(1)",
        "a(memory:1)",
        "a(x",
        "a(",
        "",
    ] {
        assert_eq!(caps_names(text), None, "{text:?}");
    }
    for text in [
        "image/jpeg",
        "image/jpeg, width=(int)160; video/x-raw",
        "video/x-raw(memory:SystemMemory), format=(string)I420",
        "a, b=(string)\"x;1\"",
        "a, b=(string)\"x\\\";1\"",
    ] {
        assert!(caps_names(text).is_some(), "{text:?}");
    }
    assert_eq!(
        caps_names(
            "video/x-raw(memory:SystemMemory), format=(string)I420, s=(string)\"a=b, c=d\", l={ 1, 2 }; image/jpeg, w=(int)[ 1, 2 ]"
        ),
        Some(vec![
            "video/x-raw",
            "memory:SystemMemory",
            "format",
            "s",
            "l",
            "image/jpeg",
            "w"
        ])
    );
    for text in [
        "a, s=(GstStructure)\"b, c=1\"",
        "a, c=(GstCaps)\"b\"",
        "a, t=(taglist)\"taglist, title=x\"",
    ] {
        assert_eq!(caps_names(text), None, "{text:?}");
    }
}

#[test]
fn caps_cannot_bring_new_names_without_end() {
    let mut engine = engine(false);
    let mut seq = 0;
    let mut caps_record = |engine: &mut Engine, caps: String| {
        let mut record = Owned::framed("cam", seq, false);
        seq += 1;
        record.header("gst-caps", &caps);
        engine.process(record.view(), T0)
    };
    let unique = std::process::id();
    // Names this process never saw, ten per record.
    let fresh = |i: usize| {
        (0..10)
            .map(|j| format!("f{unique}x{i}x{j}=(int)1"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for i in 0..MAX_NEW_CAPS_NAMES / 10 {
        pushed(caps_record(
            &mut engine,
            format!("image/jpeg, {}", fresh(i)),
        ));
    }
    assert_eq!(
        caps_record(&mut engine, format!("image/jpeg, {}", fresh(usize::MAX))),
        Decision::Skip(Skip::Bad(BadRecord::CapsNames(10)))
    );
    // Known names still pass, and so do caps already seen.
    pushed(caps_record(
        &mut engine,
        "image/jpeg, width=(int)320".into(),
    ));
    pushed(caps_record(
        &mut engine,
        format!("image/jpeg, {}", fresh(0)),
    ));
    let long = format!("image/jpeg, {}=(int)1", "n".repeat(MAX_CAPS_NAME_LEN + 1));
    assert!(matches!(
        caps_record(&mut engine, long),
        Decision::Skip(Skip::Bad(BadRecord::Caps(_)))
    ));
}

#[test]
fn bad_records_are_counted_and_name_their_cause() {
    let mut engine = engine(false);
    let mut future = Owned::plain(2, None, b"f");
    future.header("gst-version", "9");
    let mut seq = Owned::plain(3, None, b"s");
    seq.header("gst-seq", "abc");
    let causes: Vec<String> = [Owned::plain(1, None, b""), future, seq]
        .iter()
        .map(|record| match engine.process(record.view(), T0) {
            Decision::Skip(Skip::Bad(why)) => why.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(causes[0], "empty record");
    assert!(
        causes[1].contains("unsupported wire format version"),
        "{causes:?}"
    );
    assert!(causes[2].contains("gst-seq is not a number"), "{causes:?}");
    assert_eq!(engine.counters().bad_records, 3);
    assert_eq!(engine.counters().records_received, 3);
}

#[test]
fn stop_at_end_and_stop_time() {
    gst::init().unwrap();
    let mut config = config(false);
    config.stop_at_end = true;
    config.partitions = vec![0, 1];
    let mut engine = Engine::new(config.clone(), HashMap::from([(0, 2), (1, 1)]));
    assert!(!engine.at_eos());
    let mut record = Owned::plain(0, Some(T0), b"a");
    pushed(engine.process(record.view(), T0));
    record.partition = 1;
    pushed(engine.process(record.view(), T0));
    record.partition = 7;
    assert_eq!(
        engine.process(record.view(), T0),
        Decision::Skip(Skip::PastStop)
    );
    record.partition = 0;
    record.offset = i64::MAX;
    assert_eq!(engine.process(record.view(), T0), Decision::Eos);

    config.stop_at_end = false;
    config.stop_time_ms = Some(T0);
    let mut engine = Engine::new(config, HashMap::new());
    let mut late = Owned::plain(0, Some(T0 + 1), b"late");
    pushed(engine.process(Owned::plain(0, Some(T0), b"on time").view(), T0));
    // Partitions not read neither end the stream nor are remembered.
    for partition in 2..1000 {
        late.partition = partition;
        assert_eq!(
            engine.process(late.view(), T0),
            Decision::Skip(Skip::PastStop)
        );
    }
    assert_eq!(engine.passed_stop.len(), 0);
    late.partition = 0;
    assert_eq!(
        engine.process(late.view(), T0),
        Decision::Skip(Skip::PastStop)
    );
    late.partition = 1;
    assert_eq!(engine.process(late.view(), T0), Decision::Eos);
}

#[test]
fn key_filter() {
    let mut config = config(false);
    config.key = Some("door".into());
    let mut engine = Engine::new(config, HashMap::new());
    let mut record = Owned::plain(0, Some(T0), b"x");
    assert_eq!(
        engine.process(record.view(), T0),
        Decision::Skip(Skip::KeyFiltered)
    );
    record.key = Some(b"door".to_vec());
    pushed(engine.process(record.view(), T0));
    assert_eq!(engine.counters().filtered_key, 1);
}

#[test]
fn lag_arithmetic_saturates() {
    assert!(!lags(Some(T0), T0 + 5000, 0));
    assert!(!lags(Some(T0), T0 + 5000, 5000));
    assert!(lags(Some(T0), T0 + 5001, 5000));
    assert!(lags(Some(i64::MIN), i64::MAX, 1));
    assert!(!lags(Some(i64::MAX), i64::MIN, 1));
    assert!(!lags(None, T0, 1));
}

/// What a hostile or careless producer can put in a record's headers.
fn arb_headers() -> impl Strategy<Value = Vec<(String, Option<Vec<u8>>)>> {
    let key = prop_oneof![
        Just("gst-version".to_string()),
        Just("gst-caps".to_string()),
        Just("gst-stream-id".to_string()),
        Just("gst-seq".to_string()),
        Just("gst-pts".to_string()),
        Just("gst-dts".to_string()),
        Just("gst-duration".to_string()),
        Just("gst-flags".to_string()),
        Just("gst-chunk-index".to_string()),
        Just("gst-chunk-count".to_string()),
        Just("gst-frame-size".to_string()),
        "[a-z-]{0,12}",
    ];
    let value = prop_oneof![
        Just(b"1".to_vec()),
        Just(b"2".to_vec()),
        Just(b"image/jpeg".to_vec()),
        Just(b"video/x-h264, stream-format=(string)byte-stream".to_vec()),
        Just(b"delta-unit".to_vec()),
        Just(b"cam".to_vec()),
        Just(u64::MAX.to_string().into_bytes()),
        Just((u64::MAX - 1).to_string().into_bytes()),
        any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        (0u64..20).prop_map(|n| n.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..24),
    ];
    proptest::collection::vec((key, proptest::option::weighted(0.9, value)), 0..8)
}

fn arb_timestamp() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        Just(None),
        Just(Some(i64::MAX)),
        Just(Some(i64::MIN)),
        Just(Some(-1)),
        Just(Some(T0 + SIX_CENTURIES_MS)),
        (T0 - 10_000..T0 + 10_000).prop_map(Some),
        any::<i64>().prop_map(Some),
    ]
}

fn arb_record() -> impl Strategy<Value = Owned> {
    (
        prop_oneof![Just(0i32), Just(1), any::<i32>()],
        prop_oneof![0i64..20, any::<i64>()],
        arb_timestamp(),
        proptest::option::of(prop_oneof![Just(b"door".to_vec()), Just(Vec::new())]),
        prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(any::<u8>(), 1..8)
        ],
        arb_headers(),
    )
        .prop_map(
            |(partition, offset, timestamp_ms, key, payload, headers)| Owned {
                partition,
                offset,
                timestamp_ms,
                key,
                payload,
                headers,
            },
        )
}

fn arb_config() -> impl Strategy<Value = (Config, HashMap<i32, i64>)> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(prop_oneof![Just(T0), any::<i64>()]),
        proptest::option::of(Just("door".to_string())),
        proptest::collection::hash_map(0i32..3, any::<i64>(), 0..3),
    )
        .prop_map(|(original, end, stop_time_ms, key, ends)| {
            let mut config = config(original);
            config.stop_at_end = end;
            config.stop_time_ms = stop_time_ms;
            config.key = key;
            config.partitions = vec![0, 1, 2];
            (config, ends)
        })
}

/// Garbage that may be interleaved with a genuine stream: anything that is
/// not the genuine stream's next record.
#[derive(Debug, Clone)]
enum Garbage {
    /// Any record at all, as long as it does not claim the genuine stream.
    Arbitrary(Owned),
    /// A copy of a genuine record already read, sent again.
    Replay(usize),
    /// A copy of a genuine record with a forged sequence number beyond the
    /// duplicate window of anything the genuine stream reaches.
    Forged(usize, u64),
}

fn arb_garbage() -> impl Strategy<Value = Garbage> {
    prop_oneof![
        arb_record().prop_map(Garbage::Arbitrary),
        any::<usize>().prop_map(Garbage::Replay),
        (any::<usize>(), DUPLICATE_WINDOW + 10_000..=u64::MAX)
            .prop_map(|(i, seq)| Garbage::Forged(i, seq)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// No record sequence makes the engine panic, its memory stays bounded
    /// and its decisions hand on only valid times.
    #[test]
    fn any_record_sequence_is_survived(
        (config, ends) in arb_config(),
        records in proptest::collection::vec(arb_record(), 0..64),
        now in prop_oneof![Just(T0), any::<i64>()],
    ) {
        let partitions = config.partitions.len();
        let mut engine = Engine::new(config, ends);
        let mut pushes = 0;
        for record in &records {
            if let Decision::Push(push) = engine.process(record.view(), now) {
                pushes += 1;
                prop_assert!(push.capture_time.is_none_or(|d| d.as_nanos() < u64::MAX as u128));
            }
            prop_assert!(engine.tracked_streams() <= MAX_TRACKS);
            prop_assert!(engine.passed_stop.len() <= partitions);
            prop_assert!(engine.caps_text.as_ref().is_none_or(|t| t.len() <= wireformat::MAX_TEXT_LEN));
        }
        let counters = engine.counters();
        prop_assert_eq!(counters.buffers_pushed, pushes);
        prop_assert!(counters.records_received <= records.len() as u64);
        prop_assert!(counters.bad_records + counters.buffers_pushed <= counters.records_received);
    }

    /// Every record of a well-formed kafkasink stream comes out exactly once
    /// and in order, whatever else is interleaved with it.
    #[test]
    fn a_genuine_stream_comes_out_whole_through_garbage(
        original in any::<bool>(),
        frames in 1u64..80,
        gop in 1u64..10,
        garbage in proptest::collection::vec((any::<usize>(), arb_garbage()), 0..80),
    ) {
        let genuine: Vec<Owned> = (0..frames)
            .map(|seq| Owned::framed("genuine", seq, seq % gop != 0))
            .collect();
        // Garbage goes before the genuine record of its index (mod len + 1).
        let mut slots: Vec<Vec<Garbage>> = vec![Vec::new(); genuine.len() + 1];
        for (at, item) in garbage {
            let slot = at % slots.len();
            slots[slot].push(item);
        }
        let mut input: Vec<(Owned, Option<u64>)> = Vec::new();
        for (i, slot) in slots.into_iter().enumerate() {
            for item in slot {
                let record = match item {
                    Garbage::Arbitrary(record) => {
                        let claims_genuine = record.headers.iter().any(|(key, value)| {
                            key == "gst-stream-id" && value.as_deref() == Some(b"genuine")
                        });
                        if claims_genuine { continue; }
                        record
                    }
                    Garbage::Replay(_) if i == 0 => continue,
                    Garbage::Replay(j) => genuine[j % i].clone(),
                    Garbage::Forged(j, seq) => {
                        let mut record = genuine[j % genuine.len()].clone();
                        record.header("gst-seq", &seq.to_string());
                        record
                    }
                };
                input.push((record, None));
            }
            if let Some(record) = genuine.get(i) {
                input.push((record.clone(), Some(i as u64)));
            }
        }
        let mut engine = Engine::new(config(original), HashMap::new());
        let mut out = Vec::new();
        for (record, genuine_seq) in &input {
            if let (Decision::Push(_), Some(seq)) = (engine.process(record.view(), T0), genuine_seq) {
                out.push(*seq);
            }
        }
        prop_assert_eq!(out, (0..frames).collect::<Vec<_>>());
    }
}

#[test]
fn a_seeded_stream_drops_what_the_predecessor_pushed() {
    let mut engine = engine(false);
    engine.seed_stream("cam", 7);
    // A lower seed (an older commit) does not move the track back.
    engine.seed_stream("cam", 3);
    for seq in [5, 6, 7] {
        assert_eq!(
            engine.process(Owned::framed("cam", seq, false).view(), T0),
            Decision::Skip(Skip::Duplicate),
            "{seq}"
        );
    }
    let first = pushed(engine.process(Owned::framed("cam", 8, false).view(), T0));
    assert!(first.flags.contains(gst::BufferFlags::DISCONT));
    // Other streams are not affected.
    pushed(engine.process(Owned::framed("other", 0, false).view(), T0));
    let counters = engine.counters();
    assert_eq!(
        (
            counters.duplicates,
            counters.sequence_gaps,
            counters.buffers_pushed
        ),
        (3, 0, 2)
    );
}

#[test]
fn a_chunked_frame_is_pushed_whole_with_its_first_chunks_headers() {
    let mut engine = engine(true);
    let mut records = Owned::chunked("cam", 0, false, 3);
    records.extend(Owned::chunked("cam", 1, true, 2));
    for (offset, record) in records.iter_mut().enumerate() {
        record.offset = 10 + offset as i64;
    }
    let decisions: Vec<Decision> = records
        .iter()
        .map(|record| engine.process(record.view(), T0))
        .collect();
    assert_eq!(decisions[0], Decision::Skip(Skip::Chunk));
    assert_eq!(decisions[1], Decision::Skip(Skip::Chunk));
    assert_eq!(engine.counters().partial_bytes, 0);
    let first = pushed(decisions[2].clone());
    assert_eq!(first.frame, Some(Owned::frame_bytes("cam", 0)));
    assert_eq!(first.offset, 10);
    assert_eq!(pts(&first), Some(gst::ClockTime::ZERO));
    assert_eq!(
        first.duration,
        Some(gst::ClockTime::from_nseconds(FRAME_NS))
    );
    assert_eq!(
        first.caps.unwrap().to_string(),
        "image/jpeg, width=(int)160, height=(int)120"
    );
    let second = pushed(decisions[4].clone());
    assert_eq!(second.frame, Some(Owned::frame_bytes("cam", 1)));
    assert_eq!(second.offset, 13);
    assert_eq!(pts(&second), Some(gst::ClockTime::from_nseconds(FRAME_NS)));
    assert!(second.flags.contains(gst::BufferFlags::DELTA_UNIT));
    assert_eq!(second.caps, None);
    let counters = engine.counters();
    assert_eq!(counters.frames_reassembled, 2);
    assert_eq!(counters.buffers_pushed, 2);
    assert_eq!(counters.records_received, 5);
    assert_eq!(counters.incomplete_frames, 0);
    assert_eq!(counters.sequence_gaps, 0);
}

#[test]
fn an_incomplete_chunked_frame_is_counted_and_never_pushed() {
    let mut first = engine(false);
    let mut records = Owned::chunked("cam", 0, false, 3);
    records.truncate(2);
    for record in &records {
        assert_eq!(
            first.process(record.view(), T0),
            Decision::Skip(Skip::Chunk)
        );
    }
    assert!(first.counters().partial_bytes > 0);
    assert_eq!(first.oldest_unfinished(0), Some(0));
    first.finish();
    let dropped = first.take_dropped();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].seq, 0);
    let counters = first.counters();
    assert_eq!((counters.incomplete_frames, counters.partial_bytes), (1, 0));
    assert_eq!(counters.buffers_pushed, 0);

    // A whole record of the stream ends a frame it interrupts.
    let mut second = engine(false);
    second.process(Owned::chunked("cam", 0, false, 3)[0].view(), T0);
    pushed(second.process(Owned::framed("cam", 1, false).view(), T0));
    assert_eq!(second.counters().incomplete_frames, 1);
    // After a seek, chunks of a frame joined mid-way are skipped, not lost.
    second.repositioned();
    for record in &Owned::chunked("cam", 2, false, 3)[1..] {
        assert_eq!(
            second.process(record.view(), T0),
            Decision::Skip(Skip::Chunk)
        );
    }
    assert_eq!(second.counters().chunks_skipped, 2);
    assert_eq!(second.counters().incomplete_frames, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Two writers' chunked and whole frames interleaved on one partition,
    /// with redelivered records among them: each writer's frames come out
    /// once, whole and in order.
    #[test]
    fn interleaved_chunked_streams_come_out_whole_and_in_order(
        frames in 1u64..30,
        pieces in proptest::collection::vec(1usize..5, 60),
        order in proptest::collection::vec(any::<bool>(), 0..300),
        replays in proptest::collection::vec((any::<usize>(), any::<usize>()), 0..20),
    ) {
        let stream = |name: &str, offset: usize| -> Vec<Owned> {
            (0..frames)
                .flat_map(|seq| Owned::chunked(name, seq, false, pieces[seq as usize + offset]))
                .collect()
        };
        let (a, b) = (stream("a", 0), stream("b", 30));
        let (mut ia, mut ib) = (0, 0);
        let mut input = Vec::new();
        let mut picks = order.iter().copied().chain(std::iter::repeat(true));
        while ia < a.len() || ib < b.len() {
            let take_a = ib >= b.len() || (ia < a.len() && picks.next().unwrap_or(true));
            let record = if take_a { ia += 1; &a[ia - 1] } else { ib += 1; &b[ib - 1] };
            input.push(record.clone());
        }
        // A record already read, redelivered later.
        for (at, which) in replays {
            let at = at % (input.len() + 1);
            if at > 0 {
                let again = input[which % at].clone();
                input.insert(at, again);
            }
        }
        let mut engine = engine(false);
        let mut out = Vec::new();
        for (offset, record) in input.iter_mut().enumerate() {
            record.offset = offset as i64;
            if let Decision::Push(push) = engine.process(record.view(), T0) {
                out.push(push.frame.unwrap());
            }
        }
        let expect = |name: &str| -> Vec<Vec<u8>> {
            (0..frames).map(|seq| Owned::frame_bytes(name, seq)).collect()
        };
        let of = |name: &str| -> Vec<Vec<u8>> {
            out.iter().filter(|f| f.starts_with(format!("{name}/").as_bytes())).cloned().collect()
        };
        prop_assert_eq!(of("a"), expect("a"));
        prop_assert_eq!(of("b"), expect("b"));
        prop_assert_eq!(engine.counters().incomplete_frames, 0);
        prop_assert_eq!(engine.counters().partial_bytes, 0);
    }
}

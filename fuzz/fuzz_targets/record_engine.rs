// SPDX-License-Identifier: MPL-2.0

//! Fuzzes kafkasrc's record engine with arbitrary record sequences and
//! settings: any partition, offset, timestamp, key, payload and headers a
//! hostile producer or a corrupt topic could give, including header values
//! over the 64 KiB limit.
//!
//! RUSTC_BOOTSTRAP=1 ASAN_OPTIONS=detect_leaks=0 cargo fuzz run record_engine -- -max_total_time=600
//!
//! (GLib never frees its table of structure and field names, which
//! LeakSanitizer would report at exit.)

#![no_main]

#[path = "../../src/wireformat.rs"]
#[allow(dead_code)]
mod wireformat;

#[path = "../../src/kafkasrc/reassembly.rs"]
#[allow(dead_code)]
mod reassembly;

#[path = "../../src/kafkasrc/engine.rs"]
#[allow(dead_code)]
mod engine;

use std::collections::HashMap;
use std::sync::Once;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

use engine::{Config, Decision, Engine, Record};

const KEYS: [&str; 12] = [
    wireformat::VERSION_KEY,
    wireformat::CAPS_KEY,
    wireformat::STREAM_ID_KEY,
    wireformat::SEQ_KEY,
    wireformat::PTS_KEY,
    wireformat::DTS_KEY,
    wireformat::DURATION_KEY,
    wireformat::FLAGS_KEY,
    wireformat::CHUNK_INDEX_KEY,
    wireformat::CHUNK_COUNT_KEY,
    wireformat::FRAME_SIZE_KEY,
    "someone-else",
];

const CAPS: [&str; 5] = [
    "image/jpeg",
    "image/jpeg, width=(int)160, height=(int)120",
    "video/x-h264, stream-format=(string)byte-stream, alignment=(string)au",
    "video/x-raw(memory:SystemMemory), format=(string)I420",
    "image/jpeg, width=(int)[ 1, 100 ]",
];

const FLAGS: [&str; 4] = ["delta-unit", "discont", "header,marker", "gap,droppable"];

/// Longest stretched value: well past wireformat::MAX_TEXT_LEN.
const MAX_STRETCH: usize = 256 * 1024;

#[derive(Arbitrary, Debug)]
enum Value {
    Bytes(Vec<u8>),
    Number(u64),
    SmallNumber(u8),
    Caps(u8),
    Flags(u8),
    Stream(u8),
    /// `unit` repeated to `len` bytes: long values from short inputs.
    Stretched {
        unit: Vec<u8>,
        len: u32,
    },
}

impl Value {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Value::Bytes(bytes) => bytes.clone(),
            Value::Number(n) => n.to_string().into_bytes(),
            Value::SmallNumber(n) => n.to_string().into_bytes(),
            Value::Caps(i) => CAPS[*i as usize % CAPS.len()].into(),
            Value::Flags(i) => FLAGS[*i as usize % FLAGS.len()].into(),
            Value::Stream(i) => format!("cam{}", i % 4).into_bytes(),
            Value::Stretched { unit, len } => {
                let unit = if unit.is_empty() { &b"a"[..] } else { unit };
                unit.iter()
                    .copied()
                    .cycle()
                    .take((*len as usize) % MAX_STRETCH)
                    .collect()
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct FuzzRecord {
    partition: i8,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<(u8, Option<Value>)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    original_timestamps: bool,
    stop_at_end: bool,
    stop_time_ms: Option<i64>,
    key: Option<String>,
    end_offsets: Vec<(i8, i64)>,
    now_ms: i64,
    records: Vec<FuzzRecord>,
}

fuzz_target!(|input: Input| {
    static INIT: Once = Once::new();
    INIT.call_once(|| gst::init().expect("GStreamer initializes"));

    let config = Config {
        key: input.key,
        default_caps: gst::Caps::builder("image/jpeg").build(),
        original_timestamps: input.original_timestamps,
        stop_at_end: input.stop_at_end,
        stop_time_ms: input.stop_time_ms,
        partitions: vec![0, 1, 2],
        max_partial_bytes: 1 << 20,
    };
    let ends: HashMap<i32, i64> = input
        .end_offsets
        .iter()
        .map(|(partition, offset)| (i32::from(*partition), *offset))
        .collect();
    let mut engine = Engine::new(config, ends);
    let mut pushes = 0u64;
    for record in &input.records {
        let headers: Vec<(&str, Option<Vec<u8>>)> = record
            .headers
            .iter()
            .map(|(key, value)| {
                (
                    KEYS[*key as usize % KEYS.len()],
                    value.as_ref().map(Value::bytes),
                )
            })
            .collect();
        let view = Record {
            partition: i32::from(record.partition),
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            key: record.key.as_deref(),
            payload: &record.payload,
            headers: headers.iter().map(|(key, value)| (*key, value.as_deref())),
        };
        match engine.process(view, input.now_ms) {
            Decision::Push(push) => {
                pushes += 1;
                assert!(
                    push.capture_time
                        .is_none_or(|d| d.as_nanos() < u128::from(u64::MAX))
                );
            }
            Decision::Skip(_) => (),
            Decision::Eos => assert!(engine.at_eos()),
        }
        assert!(engine.tracked_streams() <= engine::MAX_TRACKS);
        assert!(engine.counters().partial_bytes <= 1 << 20);
    }
    let counters = engine.counters();
    assert_eq!(counters.buffers_pushed, pushes);
    assert!(counters.bad_records + counters.buffers_pushed <= counters.records_received);
});

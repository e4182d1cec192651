// SPDX-License-Identifier: MPL-2.0

//! Fuzzes the record header decoder with any headers a hostile producer
//! could write: known keys with arbitrary values, unknown keys, null values.
//!
//! RUSTC_BOOTSTRAP=1 cargo fuzz run wireformat -- -max_total_time=600

#![no_main]

#[path = "../../src/wireformat.rs"]
#[allow(dead_code)]
mod wireformat;

use libfuzzer_sys::fuzz_target;

const KEYS: [&str; 9] = [
    wireformat::VERSION_KEY,
    wireformat::CAPS_KEY,
    wireformat::STREAM_ID_KEY,
    wireformat::SEQ_KEY,
    wireformat::PTS_KEY,
    wireformat::DTS_KEY,
    wireformat::DURATION_KEY,
    wireformat::FLAGS_KEY,
    "someone-else",
];

fuzz_target!(|data: &[u8]| {
    // Input: records of [key index, flags, length (2 bytes), value bytes].
    let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let key = KEYS[rest[0] as usize % KEYS.len()];
        let null = rest[1] & 1 == 1;
        let len = (u16::from_le_bytes([rest[2], rest[3]]) as usize).min(rest.len() - 4);
        let value = &rest[4..4 + len];
        headers.push((key, (!null).then_some(value)));
        rest = &rest[4 + len..];
    }
    if let Ok(meta) = wireformat::decode(headers.iter().copied()) {
        // What decodes must be usable: flags re-encode, caps text is text.
        let _ = wireformat::encode_flags(meta.flags);
        assert!(
            meta.caps
                .is_none_or(|c| c.len() <= wireformat::MAX_TEXT_LEN)
        );
    }
});

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
    // Input: headers of [key index, flags, length (2 bytes), value bytes].
    // Flag bit 0: no value. Flag bit 1: stretched, the value is its first
    // (flags >> 2) + 1 bytes repeated to a length within 32 bytes of the
    // 64 KiB limit, either side (the length bytes choose where), so that
    // inputs of a few bytes reach the paths around and over the limit.
    let mut headers: Vec<(&str, Option<Vec<u8>>)> = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let key = KEYS[rest[0] as usize % KEYS.len()];
        let null = rest[1] & 1 == 1;
        let stretched = rest[1] & 2 == 2;
        let len = u16::from_le_bytes([rest[2], rest[3]]) as usize;
        let (value, used) = if stretched {
            let unit = &rest[4..4 + ((rest[1] >> 2) as usize + 1).min(rest.len() - 4)];
            let unit = if unit.is_empty() { &b"a"[..] } else { unit };
            let target = wireformat::MAX_TEXT_LEN - 32 + len % 64;
            let value = unit.iter().copied().cycle().take(target).collect();
            (value, unit.len())
        } else {
            let len = len.min(rest.len() - 4);
            (rest[4..4 + len].to_vec(), len)
        };
        headers.push((key, (!null).then_some(value)));
        rest = &rest[(4 + used).min(rest.len())..];
    }
    let borrowed = headers.iter().map(|(key, value)| (*key, value.as_deref()));
    if let Ok(meta) = wireformat::decode(borrowed) {
        // What decodes must be usable: flags re-encode, caps text is text.
        let _ = wireformat::encode_flags(meta.flags);
        assert!(
            meta.caps
                .is_none_or(|c| c.len() <= wireformat::MAX_TEXT_LEN)
        );
    }
});

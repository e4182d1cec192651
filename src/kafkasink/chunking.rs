// SPDX-License-Identifier: MPL-2.0

//! How `kafkasink` cuts a frame too large for one Kafka record into chunk
//! records (docs/wire-format.md, *Chunks*): every chunk, with the key and
//! its headers, within the record limit; the values ranges of the frame's
//! one mapped buffer, handed to librdkafka without a copy (produce.rs).

use std::ops::Range;

use super::headers::{self, CHUNK_HEADERS_MAX_LEN};
use crate::wireformat::Chunk;

/// The smallest chunk value worth a record: below it a frame would take
/// thousands of records, and the limit is surely misconfigured.
pub const MIN_CHUNK_LEN: usize = 1024;

/// A record limit that leaves less than [`MIN_CHUNK_LEN`] bytes of value
/// beside the key and the headers; the bytes it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom(pub usize);

/// How a frame is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    frame_len: usize,
    /// The value size of every chunk but the last.
    chunk_len: usize,
    count: usize,
}

impl Plan {
    /// Cuts a frame of `frame_len` bytes, whose record would have a key of
    /// `key_len` bytes and `frame_headers_len` bytes of headers, so that
    /// each chunk record (the frame's headers and the chunk headers on
    /// chunk 0, fewer on the others) is at most `limit` bytes.
    pub fn new(
        frame_len: usize,
        key_len: usize,
        frame_headers_len: usize,
        limit: usize,
    ) -> Result<Plan, NoRoom> {
        let overhead = headers::record_size(key_len, 0, frame_headers_len + CHUNK_HEADERS_MAX_LEN);
        let chunk_len = limit.saturating_sub(overhead);
        if chunk_len < MIN_CHUNK_LEN {
            return Err(NoRoom(chunk_len));
        }
        Ok(Plan {
            frame_len,
            chunk_len,
            count: frame_len.div_ceil(chunk_len).max(1),
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The chunks of the frame, in order, each with its headers' numbers
    /// and the bytes of the frame that are its value.
    pub fn chunks(&self) -> impl Iterator<Item = (Chunk, Range<usize>)> + use<> {
        let (count, frame_size) = (self.count as u64, self.frame_len as u64);
        let (frame_len, chunk_len) = (self.frame_len, self.chunk_len);
        (0..self.count).map(move |index| {
            let start = index * chunk_len;
            let chunk = Chunk {
                index: index as u64,
                count,
                frame_size,
            };
            (chunk, start..(start + chunk_len).min(frame_len))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_3_mb_frame_is_three_chunks_of_a_1_mib_limit() {
        let frame: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
        let plan = Plan::new(frame.len(), 26, 500, 1 << 20).unwrap();
        assert_eq!(plan.count(), 3);
        let chunks: Vec<_> = plan.values(&frame);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].1.len(), chunks[1].1.len());
        assert_eq!(chunks[2].0.index, 2);
        assert_eq!(chunks.concat_values(), frame);
    }

    #[test]
    fn a_limit_leaving_no_room_is_refused() {
        let overhead = headers::record_size(10, 0, 400 + CHUNK_HEADERS_MAX_LEN);
        assert_eq!(
            Plan::new(5000, 10, 400, overhead + MIN_CHUNK_LEN - 1),
            Err(NoRoom(MIN_CHUNK_LEN - 1))
        );
        assert_eq!(Plan::new(5000, 10, 400, 100), Err(NoRoom(0)));
        assert!(Plan::new(5000, 10, 400, overhead + MIN_CHUNK_LEN).is_ok());
    }

    impl Plan {
        fn values<'a>(&self, frame: &'a [u8]) -> Vec<(Chunk, &'a [u8])> {
            self.chunks()
                .map(|(chunk, range)| (chunk, &frame[range]))
                .collect()
        }
    }

    trait ConcatValues {
        fn concat_values(&self) -> Vec<u8>;
    }

    impl ConcatValues for Vec<(Chunk, &[u8])> {
        fn concat_values(&self) -> Vec<u8> {
            self.iter()
                .flat_map(|(_, value)| value.iter().copied())
                .collect()
        }
    }

    proptest! {
        #[test]
        fn chunks_fit_the_limit_and_rebuild_the_frame(
            frame_len in 1usize..200_000,
            key_len in 0usize..300,
            headers_len in 0usize..2000,
            limit in 1000usize..70_000,
        ) {
            let frame: Vec<u8> = (0..frame_len).map(|i| (i * 7) as u8).collect();
            let Ok(plan) = Plan::new(frame_len, key_len, headers_len, limit) else {
                return Ok(());
            };
            let chunks: Vec<_> = plan.values(&frame);
            prop_assert_eq!(chunks.len(), plan.count());
            for (i, (chunk, value)) in chunks.iter().enumerate() {
                prop_assert_eq!(chunk.index, i as u64);
                prop_assert_eq!(chunk.count, plan.count() as u64);
                prop_assert_eq!(chunk.frame_size, frame_len as u64);
                prop_assert!(!value.is_empty());
                let size = headers::record_size(
                    key_len,
                    value.len(),
                    headers_len + CHUNK_HEADERS_MAX_LEN,
                );
                prop_assert!(size <= limit, "chunk record of {} > {}", size, limit);
            }
            prop_assert_eq!(chunks.concat_values(), frame);
        }
    }
}

// SPDX-License-Identifier: MPL-2.0

//! What a consumer group member leaves to its successor: with the offset of
//! every record it pushed, it commits the stream id and sequence number of
//! that record as the commit's metadata, which Kafka keeps with the offset.
//! A member that gets the partition next reads it on assignment and drops
//! records of that stream at or below that sequence number: duplicates a
//! producer left in the log before the committed offset's successor are
//! not pushed twice (docs/design.md).

use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;

use crate::kafka::{KafkaContext, RDKAFKA_CAT};

/// The consumer's client context: the shared one, plus rebalance news.
pub type SrcContext = KafkaContext<Rebalances>;

/// Set by librdkafka's rebalance callback, taken by the streaming thread.
#[derive(Debug, Default)]
pub struct Rebalances {
    assigned: AtomicBool,
}

impl Rebalances {
    /// Whether partitions were assigned since the last call.
    pub fn take_assigned(&self) -> bool {
        self.assigned.swap(false, Ordering::AcqRel)
    }
}

impl ConsumerContext for SrcContext {
    /// Runs inside the consumer's poll, before any record of the new
    /// assignment is returned.
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.extra.assigned.store(true, Ordering::Release);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        // A failed commit (the coordinator moving) is made good by the next
        // one; at worst a successor repeats what it did not cover.
        if let Err(err) = result {
            gst::debug!(RDKAFKA_CAT, "offset commit failed: {err}");
        }
    }
}

/// What the metadata starts with, so that a commit made by another kind of
/// client is not mistaken for ours.
const METADATA_PREFIX: &str = "gst-kafka/1 ";

/// Kafka refuses commit metadata over `offset.metadata.max.bytes` (4096 by
/// default); stream ids are a few dozen bytes.
const MAX_METADATA_LEN: usize = 1024;

/// The commit metadata naming the record pushed last: its stream id and
/// sequence number. `None` when the stream id is too long to commit.
pub fn metadata(stream_id: &str, seq: u64) -> Option<String> {
    let text = format!("{METADATA_PREFIX}{seq} {stream_id}");
    (text.len() <= MAX_METADATA_LEN).then_some(text)
}

/// The stream id and sequence number in commit metadata written by
/// [`metadata`]; `None` for anything else.
pub fn parse_metadata(bytes: &[u8]) -> Option<(&str, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (seq, stream_id) = text.strip_prefix(METADATA_PREFIX)?.split_once(' ')?;
    if stream_id.is_empty() || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stream_id, seq.parse().ok()?))
}

/// The streams and sequence numbers in the metadata of committed offsets
/// (as `committed()` returns them), of every partition that has ours.
pub fn committed_streams(committed: &TopicPartitionList) -> Vec<(String, u64)> {
    let list = committed.ptr();
    let mut streams = Vec::new();
    // rust-rdkafka's metadata accessor panics on metadata that is not
    // UTF-8, and any client of the group may commit such: read the bytes.
    // SAFETY: `list` is a valid partition list owned by `committed`, whose
    // `cnt` elements each hold `metadata_size` bytes at `metadata` (or
    // null), alive as long as `committed` is borrowed.
    unsafe {
        let count = usize::try_from((*list).cnt).unwrap_or(0);
        for i in 0..count {
            let element = &*(*list).elems.add(i);
            if element.metadata.is_null() || element.metadata_size == 0 {
                continue;
            }
            let bytes =
                std::slice::from_raw_parts(element.metadata as *const u8, element.metadata_size);
            if let Some((stream_id, seq)) = parse_metadata(bytes) {
                streams.push((stream_id.to_string(), seq));
            }
        }
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_strangers_are_ignored() {
        let text = metadata("cam 1-00000000deadbeef", 42).unwrap();
        assert_eq!(
            parse_metadata(text.as_bytes()),
            Some(("cam 1-00000000deadbeef", 42))
        );
        assert_eq!(metadata(&"x".repeat(2000), 1), None);
        for stranger in [
            &b""[..],
            b"some other client",
            b"gst-kafka/1 ",
            b"gst-kafka/1 12",
            b"gst-kafka/1 -1 s",
            b"gst-kafka/1 +1 s",
            b"gst-kafka/1 99999999999999999999999 s",
            b"gst-kafka/2 1 s",
            b"gst-kafka/1 1 \xff",
        ] {
            assert_eq!(parse_metadata(stranger), None, "{stranger:?}");
        }
    }

    #[test]
    fn committed_metadata_is_read_from_every_partition() {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("t", 0, rdkafka::Offset::Offset(10))
            .unwrap();
        list.add_partition_offset("t", 1, rdkafka::Offset::Offset(20))
            .unwrap();
        list.add_partition_offset("t", 2, rdkafka::Offset::Offset(30))
            .unwrap();
        let mut elements = list.elements();
        elements[0].set_metadata(metadata("a", 9).unwrap());
        elements[2].set_metadata("not ours");
        assert_eq!(committed_streams(&list), vec![("a".to_string(), 9)]);
    }
}

// SPDX-License-Identifier: MPL-2.0

//! What a consumer group member leaves to its successor: with the offset of
//! every record it pushed, it commits as the commit's metadata (which Kafka
//! keeps with the offset) the stream id and sequence number of that record
//! and of the last record of every other stream it pushed at or after the
//! committed offset (which an unfinished chunked frame holds back). A
//! member that gets the partition next reads it on assignment and drops
//! records of those streams at or below those sequence numbers: what the
//! predecessor pushed, and duplicates a producer left in the log, are not
//! pushed twice (docs/design.md).

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

/// What the metadata of one stream started with (before several streams
/// were named), still read: `gst-kafka/1 <seq> <stream id>`.
const METADATA_PREFIX_V1: &str = "gst-kafka/1 ";

/// The first line of the metadata naming several streams, one
/// `<seq> <stream id>` line each after it; it tells a commit of ours from
/// one by another kind of client.
const METADATA_HEADER: &str = "gst-kafka/2";

/// Kafka refuses commit metadata over `offset.metadata.max.bytes` (4096 by
/// default): streams beyond this are left out, the oldest first.
pub const MAX_METADATA_LEN: usize = 4000;

/// The commit metadata naming streams and the sequence number of each
/// pushed last, as given: newest first, so that what does not fit in
/// [`MAX_METADATA_LEN`] is the oldest. Stream ids that cannot be written on
/// one line are left out. `None` when no stream fits.
pub fn metadata<'a>(streams: impl IntoIterator<Item = (&'a str, u64)>) -> Option<String> {
    let mut text = String::from(METADATA_HEADER);
    let mut named = false;
    for (stream_id, seq) in streams {
        if stream_id.is_empty() || stream_id.contains('\n') {
            continue;
        }
        let line = format!("\n{seq} {stream_id}");
        if text.len() + line.len() > MAX_METADATA_LEN {
            break;
        }
        text.push_str(&line);
        named = true;
    }
    named.then_some(text)
}

/// One `<seq> <stream id>` pair.
fn parse_stream(text: &str) -> Option<(&str, u64)> {
    let (seq, stream_id) = text.split_once(' ')?;
    if stream_id.is_empty() || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stream_id, seq.parse().ok()?))
}

/// The stream ids and sequence numbers in commit metadata written by
/// [`metadata`], or by the one-stream format before it; `None` for
/// anything else.
pub fn parse_metadata(bytes: &[u8]) -> Option<Vec<(&str, u64)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    if let Some(stream) = text.strip_prefix(METADATA_PREFIX_V1) {
        return Some(vec![parse_stream(stream)?]);
    }
    let mut lines = text.split('\n');
    if lines.next() != Some(METADATA_HEADER) {
        return None;
    }
    let streams = lines.map(parse_stream).collect::<Option<Vec<_>>>()?;
    (!streams.is_empty()).then_some(streams)
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
            if let Some(named) = parse_metadata(bytes) {
                streams.extend(
                    named
                        .into_iter()
                        .map(|(stream_id, seq)| (stream_id.to_string(), seq)),
                );
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
        let text = metadata([("cam 1-00000000deadbeef", 42), ("cam-b", 7)]).unwrap();
        assert_eq!(text, "gst-kafka/2\n42 cam 1-00000000deadbeef\n7 cam-b");
        assert_eq!(
            parse_metadata(text.as_bytes()),
            Some(vec![("cam 1-00000000deadbeef", 42), ("cam-b", 7)])
        );
        // The one-stream format of earlier versions is still read.
        assert_eq!(
            parse_metadata(b"gst-kafka/1 12 cam a"),
            Some(vec![("cam a", 12)])
        );
        assert_eq!(metadata([("", 1), ("a\nb", 2)]), None);
        assert_eq!(metadata([(&*"x".repeat(5000), 1)]), None);
        for stranger in [
            &b""[..],
            b"some other client",
            b"gst-kafka/1 ",
            b"gst-kafka/1 12",
            b"gst-kafka/1 -1 s",
            b"gst-kafka/1 +1 s",
            b"gst-kafka/1 99999999999999999999999 s",
            b"gst-kafka/1 1 \xff",
            b"gst-kafka/2",
            b"gst-kafka/2\n",
            b"gst-kafka/2\n1 a\n",
            b"gst-kafka/2\n1 a\nb",
            b"gst-kafka/2 1 a",
            b"gst-kafka/3\n1 a",
        ] {
            assert_eq!(parse_metadata(stranger), None, "{stranger:?}");
        }
    }

    #[test]
    fn metadata_keeps_the_newest_streams_within_kafkas_limit() {
        let ids: Vec<String> = (0..200)
            .map(|i| format!("camera-{i:04}-0123456789abcdef"))
            .collect();
        let text = metadata(
            ids.iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), 1000 + i as u64)),
        )
        .unwrap();
        assert!(text.len() <= MAX_METADATA_LEN && text.len() > MAX_METADATA_LEN - 40);
        let parsed = parse_metadata(text.as_bytes()).unwrap();
        assert!(parsed.len() > 100 && parsed.len() < 200, "{}", parsed.len());
        for (i, (id, seq)) in parsed.iter().enumerate() {
            assert_eq!((*id, *seq), (ids[i].as_str(), 1000 + i as u64));
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
        elements[0].set_metadata(metadata([("a", 9), ("b", 3)]).unwrap());
        elements[1].set_metadata("gst-kafka/1 4 c");
        elements[2].set_metadata("not ours");
        assert_eq!(
            committed_streams(&list),
            vec![
                ("a".to_string(), 9),
                ("b".to_string(), 3),
                ("c".to_string(), 4)
            ]
        );
    }
}

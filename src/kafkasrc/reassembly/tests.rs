// SPDX-License-Identifier: MPL-2.0

//! Reassembly without a broker: unit tests of each case, and property tests
//! over interleaved, cut and garbled chunk sequences.

use super::*;
use proptest::prelude::*;

/// A chunk record owning its bytes.
#[derive(Debug, Clone)]
struct Owned {
    partition: i32,
    offset: i64,
    stream: u64,
    stream_id: String,
    seq: u64,
    chunk: Chunk,
    value: Vec<u8>,
}

impl Owned {
    fn view(&self) -> ChunkRecord<'_> {
        ChunkRecord {
            partition: self.partition,
            offset: self.offset,
            stream: self.stream,
            stream_id: &self.stream_id,
            seq: self.seq,
            chunk: self.chunk,
            value: &self.value,
        }
    }
}

/// The bytes of frame `seq` of `stream`, `len` long.
fn frame(stream: u64, seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 ^ stream.wrapping_mul(31) ^ seq.wrapping_mul(7)) as u8)
        .collect()
}

/// Frame `seq` of `stream` cut into chunks of `chunk_len` bytes, at
/// offsets from 0 (renumbered by the caller once interleaved).
fn chunks(stream: u64, seq: u64, len: usize, chunk_len: usize) -> Vec<Owned> {
    let bytes = frame(stream, seq, len);
    let count = len.div_ceil(chunk_len) as u64;
    bytes
        .chunks(chunk_len)
        .enumerate()
        .map(|(index, value)| Owned {
            partition: 0,
            offset: 0,
            stream,
            stream_id: format!("cam-{stream}"),
            seq,
            chunk: Chunk {
                index: index as u64,
                count,
                frame_size: len as u64,
            },
            value: value.to_vec(),
        })
        .collect()
}

fn numbered(mut records: Vec<Owned>) -> Vec<Owned> {
    for (offset, record) in records.iter_mut().enumerate() {
        record.offset = offset as i64;
    }
    records
}

/// Feeds `records`; returns the frames completed as (stream, seq, bytes,
/// first offset).
fn feed(reassembly: &mut Reassembly<u64>, records: &[Owned]) -> Vec<(u64, u64, Vec<u8>, i64)> {
    let mut frames = Vec::new();
    for record in records {
        let outcome = reassembly.add(record.view(), 0, || record.seq);
        assert!(reassembly.held_bytes() <= reassembly.max_bytes);
        if let Outcome::Complete {
            frame,
            first_offset,
            first,
        } = outcome
        {
            assert_eq!(first, record.seq);
            frames.push((record.stream, record.seq, frame, first_offset));
        }
    }
    frames
}

#[test]
fn a_frame_comes_out_whole_once_its_last_chunk_arrived() {
    let mut reassembly = Reassembly::new(DEFAULT_MAX_PARTIAL_BYTES);
    let records = numbered(chunks(1, 5, 2500, 1000));
    assert_eq!(reassembly.add(records[0].view(), 0, || 5), Outcome::Held);
    assert_eq!(reassembly.held_bytes(), 2500);
    assert_eq!(reassembly.oldest_unfinished(0), Some(0));
    assert_eq!(reassembly.add(records[1].view(), 0, || 5), Outcome::Held);
    assert_eq!(
        reassembly.add(records[2].view(), 0, || 5),
        Outcome::Complete {
            frame: frame(1, 5, 2500),
            first_offset: 0,
            first: 5
        }
    );
    assert_eq!(reassembly.held_bytes(), 0);
    assert_eq!(reassembly.oldest_unfinished(0), None);
    assert_eq!(reassembly.drops(), 0);
}

#[test]
fn two_writers_interleaved_on_one_partition_are_told_apart() {
    let mut reassembly = Reassembly::new(DEFAULT_MAX_PARTIAL_BYTES);
    let a = chunks(1, 0, 3000, 1000);
    let b = chunks(2, 0, 2000, 1000);
    let records = numbered(vec![
        a[0].clone(),
        b[0].clone(),
        a[1].clone(),
        b[1].clone(),
        a[2].clone(),
    ]);
    let frames = feed(&mut reassembly, &records[..4]);
    assert_eq!(frames, vec![(2, 0, frame(2, 0, 2000), 1)]);
    // A's chunk 0 at offset 0 is still being assembled.
    assert_eq!(reassembly.oldest_unfinished(0), Some(0));
    let frames = feed(&mut reassembly, &records[4..]);
    assert_eq!(frames, vec![(1, 0, frame(1, 0, 3000), 0)]);
    assert_eq!(reassembly.drops(), 0);
}

#[test]
fn a_writer_restarted_mid_frame_loses_that_frame_only() {
    let mut reassembly = Reassembly::new(DEFAULT_MAX_PARTIAL_BYTES);
    let mut records = chunks(1, 3, 3000, 1000);
    records.truncate(2);
    records.extend(chunks(1, 4, 2000, 1000));
    let frames = feed(&mut reassembly, &numbered(records));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].1, 4);
    let dropped = reassembly.take_dropped();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].reason, DropReason::Interrupted);
    assert_eq!((dropped[0].seq, dropped[0].chunks_received), (3, 2));
    assert!(dropped[0].to_string().contains("frame 3 of stream cam-1"));

    // A whole record of the stream interrupts a frame too.
    let mut partial = chunks(1, 5, 3000, 1000);
    partial.truncate(1);
    feed(&mut reassembly, &partial);
    reassembly.whole_record(0, 1, "cam-1");
    assert_eq!(reassembly.drops(), 2);
    assert_eq!(reassembly.held_bytes(), 0);
}

#[test]
fn a_missing_chunk_drops_the_frame_and_skips_its_rest_quietly() {
    let mut reassembly = Reassembly::new(DEFAULT_MAX_PARTIAL_BYTES);
    let mut records = chunks(1, 0, 4000, 1000);
    records.remove(1);
    records.extend(chunks(1, 1, 1500, 1000));
    let frames = feed(&mut reassembly, &numbered(records));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].1, 1);
    let dropped = reassembly.take_dropped();
    assert_eq!(dropped.len(), 1);
    assert_eq!(
        dropped[0].reason,
        DropReason::ChunkMissing {
            expected: 1,
            got: 2
        }
    );
}

#[test]
fn joining_mid_frame_skips_to_the_next_frame_without_a_loss() {
    let mut reassembly = Reassembly::new(DEFAULT_MAX_PARTIAL_BYTES);
    let mut records = chunks(1, 0, 3000, 1000);
    records.remove(0);
    records.extend(chunks(1, 1, 2000, 1000));
    let records = numbered(records);
    for record in &records[..2] {
        assert_eq!(
            reassembly.add(record.view(), 0, || 0),
            Outcome::JoinedMidFrame
        );
    }
    let frames = feed(&mut reassembly, &records[2..]);
    assert_eq!(frames.len(), 1);
    assert_eq!(reassembly.drops(), 0);

    // After a seek, the same holds again; what was held is let go.
    let mut partial = chunks(1, 2, 3000, 1000);
    partial.truncate(2);
    feed(&mut reassembly, &partial);
    reassembly.repositioned();
    assert_eq!(reassembly.held_bytes(), 0);
    let tail = chunks(1, 2, 3000, 1000);
    assert_eq!(
        reassembly.add(tail[2].view(), 0, || 2),
        Outcome::JoinedMidFrame
    );
    assert_eq!(reassembly.drops(), 0);

    // A stream already being read whose chunk 0 went missing is a loss.
    let orphan = chunks(1, 3, 3000, 1000);
    assert_eq!(reassembly.add(orphan[1].view(), 0, || 3), Outcome::Ignored);
    assert_eq!(reassembly.add(orphan[2].view(), 0, || 3), Outcome::Ignored);
    assert_eq!(
        reassembly.take_dropped()[0].reason,
        DropReason::NoFirstChunk
    );
    assert_eq!(reassembly.drops(), 1);
}

#[test]
fn redelivered_chunks_are_ignored() {
    let mut reassembly = Reassembly::new(DEFAULT_MAX_PARTIAL_BYTES);
    let c = chunks(1, 0, 3000, 1000);
    let d = chunks(1, 1, 2000, 1000);
    let records = numbered(vec![
        c[0].clone(),
        c[0].clone(),
        c[1].clone(),
        c[0].clone(),
        c[1].clone(),
        c[2].clone(),
        // A frame already put together, again: before and inside the next.
        c[0].clone(),
        c[2].clone(),
        d[0].clone(),
        c[1].clone(),
        d[1].clone(),
    ]);
    let frames = feed(&mut reassembly, &records);
    assert_eq!(
        frames,
        vec![(1, 0, frame(1, 0, 3000), 0), (1, 1, frame(1, 1, 2000), 8)]
    );
    assert_eq!(reassembly.drops(), 0);
}

#[test]
fn the_bound_on_held_bytes_drops_the_oldest_frame_and_refuses_larger_ones() {
    let mut reassembly = Reassembly::new(5000);
    // Too large for the bound at all.
    let huge = chunks(1, 0, 6000, 1000);
    assert_eq!(reassembly.add(huge[0].view(), 0, || 0), Outcome::Ignored);
    assert_eq!(reassembly.add(huge[1].view(), 0, || 0), Outcome::Ignored);
    let dropped = reassembly.take_dropped();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].reason, DropReason::TooLarge);
    assert_eq!(reassembly.held_bytes(), 0);

    // Two frames of 3000 bytes cannot be held at once: the older goes.
    let a = chunks(2, 0, 3000, 1000);
    let b = chunks(3, 0, 3000, 1000);
    assert_eq!(reassembly.add(a[0].view(), 0, || 0), Outcome::Held);
    assert_eq!(reassembly.add(b[0].view(), 0, || 0), Outcome::Held);
    assert_eq!(reassembly.held_bytes(), 3000);
    let dropped = reassembly.take_dropped();
    assert_eq!(dropped.len(), 1);
    assert_eq!(
        (dropped[0].stream_id.as_str(), dropped[0].reason),
        ("cam-2", DropReason::Evicted)
    );
    assert!(dropped[0].to_string().contains("max-partial-bytes"));
    assert_eq!(reassembly.add(a[1].view(), 0, || 0), Outcome::Ignored);
    let frames = feed(&mut reassembly, &b[1..]);
    assert_eq!(frames.len(), 1);

    // What the caller keeps of chunk 0 counts too.
    let c = chunks(4, 0, 3000, 1000);
    assert_eq!(reassembly.add(c[0].view(), 2500, || 0), Outcome::Ignored);
    assert_eq!(reassembly.take_dropped()[0].reason, DropReason::TooLarge);
}

#[test]
fn chunks_that_disagree_with_their_frame_drop_it() {
    let mut reassembly = Reassembly::new(DEFAULT_MAX_PARTIAL_BYTES);
    let mut records = chunks(1, 0, 3000, 1000);
    records[1].chunk.frame_size = 4000;
    feed(&mut reassembly, &records);
    assert_eq!(
        reassembly.take_dropped()[0].reason,
        DropReason::Inconsistent
    );

    // Values adding up to more, or fewer, bytes than the frame size.
    let mut longer = chunks(1, 1, 3000, 1000);
    longer[2].value.push(0);
    let mut shorter = chunks(1, 2, 3000, 1000);
    shorter[2].value.pop();
    for records in [longer, shorter] {
        assert!(feed(&mut reassembly, &records).is_empty());
        assert_eq!(
            reassembly.take_dropped()[0].reason,
            DropReason::Inconsistent
        );
    }
    assert_eq!(reassembly.held_bytes(), 0);
}

#[test]
fn frames_unfinished_at_the_end_are_dropped_and_counted() {
    let mut reassembly = Reassembly::new(DEFAULT_MAX_PARTIAL_BYTES);
    let mut records = chunks(1, 0, 3000, 1000);
    records.truncate(2);
    feed(&mut reassembly, &records);
    reassembly.finish();
    assert_eq!(reassembly.take_dropped()[0].reason, DropReason::Unfinished);
    assert_eq!(reassembly.drops(), 1);
    assert_eq!(reassembly.held_bytes(), 0);
}

#[test]
fn remembered_streams_are_bounded() {
    let mut reassembly = Reassembly::new(u64::MAX);
    for stream in 0..(MAX_STREAMS as u64 + 10) {
        let c = chunks(stream, 0, 2000, 1000);
        reassembly.add(c[0].view(), 0, || 0);
    }
    assert_eq!(reassembly.streams(), MAX_STREAMS);
    assert_eq!(reassembly.drops(), 10);
    assert_eq!(reassembly.held_bytes(), MAX_STREAMS as u64 * 2000);
}

/// Frames of a few streams: (stream, length) in each stream's order.
fn arb_frames() -> impl Strategy<Value = Vec<(u64, usize)>> {
    proptest::collection::vec((0u64..4, 1usize..5000), 1..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Whatever the interleaving, and whatever chunks are lost: a frame
    /// comes out only whole and byte-identical, every frame whose chunks
    /// all arrived comes out, and what is held stays within the bound.
    #[test]
    fn frames_come_out_whole_or_not_at_all(
        frames in arb_frames(),
        chunk_len in 500usize..2000,
        order in proptest::collection::vec(any::<u8>(), 0..400),
        lost in proptest::collection::hash_set(0usize..200, 0..4),
        max_bytes in prop_oneof![Just(DEFAULT_MAX_PARTIAL_BYTES), 4000u64..20_000],
    ) {
        // Per stream, its frames' chunks in order.
        let mut queues: Vec<std::collections::VecDeque<Owned>> = vec![Default::default(); 4];
        let mut seqs = [0u64; 4];
        for (stream, len) in &frames {
            let seq = seqs[*stream as usize];
            seqs[*stream as usize] += 1;
            queues[*stream as usize].extend(chunks(*stream, seq, *len, chunk_len));
        }
        // Interleaved by `order`, each stream kept in order.
        let mut interleaved = Vec::new();
        let mut picks = order.iter().copied().cycle();
        while queues.iter().any(|q| !q.is_empty()) {
            let start = picks.next().unwrap_or(0) as usize;
            let stream = (0..4).map(|i| (start + i) % 4).find(|&i| !queues[i].is_empty());
            if let Some(stream) = stream {
                interleaved.extend(queues[stream].pop_front());
            }
        }
        let mut cut = Vec::new();
        let mut broken = std::collections::HashSet::new();
        for (i, record) in interleaved.into_iter().enumerate() {
            if lost.contains(&i) {
                broken.insert((record.stream, record.seq));
            } else {
                cut.push(record);
            }
        }
        let records = numbered(cut);
        let mut reassembly = Reassembly::new(max_bytes);
        let out = feed(&mut reassembly, &records);
        reassembly.finish();
        prop_assert_eq!(reassembly.held_bytes(), 0);
        let mut seen = std::collections::HashSet::new();
        for (stream, seq, bytes, first_offset) in &out {
            prop_assert!(!broken.contains(&(*stream, *seq)), "frame {}/{} had a chunk lost", stream, seq);
            prop_assert!(seen.insert((*stream, *seq)), "frame {}/{} twice", stream, seq);
            prop_assert_eq!(bytes, &frame(*stream, *seq, bytes.len()));
            let first = &records[*first_offset as usize];
            prop_assert_eq!((first.stream, first.seq, first.chunk.index), (*stream, *seq, 0));
            prop_assert_eq!(first.chunk.frame_size, bytes.len() as u64);
        }
        // With room for every frame at once, every intact frame comes out,
        // and every broken one is counted.
        if max_bytes == DEFAULT_MAX_PARTIAL_BYTES {
            let mut seqs = [0u64; 4];
            let mut intact = 0;
            for (stream, _) in &frames {
                let seq = seqs[*stream as usize];
                seqs[*stream as usize] += 1;
                if !broken.contains(&(*stream, seq)) {
                    intact += 1;
                }
            }
            prop_assert_eq!(out.len(), intact);
        }
    }

    /// Chunk records with any numbers neither panic nor hold more than the
    /// bound or more streams than MAX_STREAMS.
    #[test]
    fn any_chunk_sequence_is_survived(
        records in proptest::collection::vec(
            (0i32..3, 0u64..6, 0u64..4, 0u64..5, 1u64..6, 0u64..20_000, 0usize..3000),
            0..200,
        ),
        max_bytes in 0u64..30_000,
    ) {
        let mut reassembly = Reassembly::new(max_bytes);
        for (offset, (partition, stream, seq, index, count, frame_size, len)) in records.into_iter().enumerate() {
            let record = Owned {
                partition,
                offset: offset as i64,
                stream,
                stream_id: format!("s{stream}"),
                seq,
                chunk: Chunk { index: index.min(count - 1), count, frame_size: frame_size.max(count) },
                value: vec![0; len],
            };
            if let Outcome::Complete { frame, .. } = reassembly.add(record.view(), 10, || ()) {
                prop_assert_eq!(frame.len() as u64, record.chunk.frame_size);
            }
            prop_assert!(reassembly.held_bytes() <= max_bytes);
            prop_assert!(reassembly.take_dropped().len() <= MAX_REPORTS);
        }
        reassembly.finish();
        prop_assert_eq!(reassembly.held_bytes(), 0);
    }
}

// SPDX-License-Identifier: MPL-2.0

//! Puts frames that `kafkasink` cut into chunk records together again
//! (docs/wire-format.md, *Chunks*), apart from GStreamer and Kafka clients:
//! a frame comes out only once every chunk of it arrived, in order, as one
//! buffer; a frame missing a chunk is dropped and reported, never handed
//! on in part. Chunks of several writers interleaved on one partition are
//! told apart by partition and stream; a frame is its stream's sequence
//! number. What is held for unfinished frames is bounded in bytes and in
//! streams, whatever the records say.

use std::collections::HashMap;
use std::fmt;

use crate::wireformat::Chunk;

/// Default bound of the bytes held for unfinished frames: the 64 MiB one
/// fetch of this consumer may bring (`fetch.max.bytes`), room for sixteen
/// 4 MB 4K JPEGs of sixteen cameras interleaved on one partition.
pub const DEFAULT_MAX_PARTIAL_BYTES: u64 = 64 * 1024 * 1024;

/// Most streams remembered per reader (as the engine's sequence tracks):
/// beyond it the one seen least recently is forgotten, with its unfinished
/// frame.
pub const MAX_STREAMS: usize = 1024;

/// Reports kept until taken: the element takes them after every record.
const MAX_REPORTS: usize = 64;

/// How far behind the last frame put together of its stream a chunk is
/// taken for a redelivery and ignored (as the engine's duplicate window):
/// further behind, the stream started over or the newer number was forged.
const REDELIVERY_WINDOW: u64 = 1024;

/// One chunk record, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ChunkRecord<'a> {
    pub partition: i32,
    pub offset: i64,
    /// A keyed hash of the stream id.
    pub stream: u64,
    pub stream_id: &'a str,
    pub seq: u64,
    pub chunk: Chunk,
    pub value: &'a [u8],
}

/// Why an unfinished frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Another frame, or a whole record, of its stream came before it ended
    /// (its writer was restarted or killed mid-frame).
    Interrupted,
    /// A chunk came after a gap: `expected` was next.
    ChunkMissing { expected: u64, got: u64 },
    /// A chunk of a frame whose chunk 0 never came, from a stream already
    /// being read.
    NoFirstChunk,
    /// Its chunks disagree on the chunk count or the frame size.
    Inconsistent,
    /// Larger than the bound on bytes held for unfinished frames.
    TooLarge,
    /// Forgotten to make room for newer frames (the bound on bytes or on
    /// streams).
    Evicted,
    /// Still unfinished at the end of the stream.
    Unfinished,
}

/// A frame dropped unfinished: what a warning says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub partition: i32,
    pub stream_id: String,
    pub seq: u64,
    /// Offset of its first chunk read (chunk 0 unless it never came).
    pub first_offset: i64,
    pub frame_size: u64,
    pub chunks_received: u64,
    pub chunk_count: u64,
    pub reason: DropReason,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "frame {} of stream {} ({} bytes, from partition {} offset {}) dropped after {} of {} chunks: ",
            self.seq,
            self.stream_id,
            self.frame_size,
            self.partition,
            self.first_offset,
            self.chunks_received,
            self.chunk_count
        )?;
        match self.reason {
            DropReason::Interrupted => {
                write!(
                    f,
                    "its stream went on before it ended (writer stopped mid-frame)"
                )
            }
            DropReason::ChunkMissing { expected, got } => {
                write!(f, "chunk {expected} is missing (chunk {got} came next)")
            }
            DropReason::NoFirstChunk => write!(f, "its first chunk never came"),
            DropReason::Inconsistent => {
                write!(
                    f,
                    "its chunks disagree on the chunk count or the frame size"
                )
            }
            DropReason::TooLarge => write!(f, "the frame is larger than max-partial-bytes"),
            DropReason::Evicted => write!(
                f,
                "max-partial-bytes (or the number of streams) is exceeded by unfinished frames: \
                 raise max-partial-bytes"
            ),
            DropReason::Unfinished => write!(f, "the stream ended before it"),
        }
    }
}

/// What became of a chunk.
#[derive(Debug, PartialEq)]
pub enum Outcome<T> {
    /// Kept: its frame is not complete yet.
    Held,
    /// It completed its frame: the frame's bytes, the offset of its chunk
    /// 0, and what the caller kept of chunk 0.
    Complete {
        frame: Vec<u8>,
        first_offset: i64,
        first: T,
    },
    /// Not used: a redelivered chunk, or one of a frame being skipped.
    Ignored,
    /// Not used: the rest of a frame the reader joined in the middle of
    /// (after a start, a seek, a catch-up), not a loss.
    JoinedMidFrame,
}

#[derive(Debug)]
struct Partial<T> {
    seq: u64,
    chunk_count: u64,
    frame_size: u64,
    next_index: u64,
    first_offset: i64,
    frame: Vec<u8>,
    /// Bytes counted against the bound for it.
    held: u64,
    first: T,
}

/// One stream of one partition, seen since the reader was positioned.
#[derive(Debug)]
struct Stream<T> {
    stream_id: String,
    partial: Option<Partial<T>>,
    /// A frame whose remaining chunks are skipped without a word.
    skipping: Option<u64>,
    /// The frame the reader joined in the middle of: its chunks are skipped
    /// as such.
    joined: Option<u64>,
    /// The sequence number of the last frame put together.
    last_completed: Option<u64>,
    last_used: u64,
}

#[derive(Debug)]
pub struct Reassembly<T> {
    max_bytes: u64,
    held: u64,
    streams: HashMap<(i32, u64), Stream<T>>,
    uses: u64,
    dropped: Vec<Dropped>,
    drops: u64,
}

impl<T> Reassembly<T> {
    pub fn new(max_bytes: u64) -> Self {
        Reassembly {
            max_bytes,
            held: 0,
            streams: HashMap::new(),
            uses: 0,
            dropped: Vec::new(),
            drops: 0,
        }
    }

    /// Bytes held for unfinished frames (at most the bound).
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    /// Frames dropped unfinished so far.
    pub fn drops(&self) -> u64 {
        self.drops
    }

    /// The frames dropped since the last call (the most recent
    /// [`MAX_REPORTS`] of them; [`Reassembly::drops`] counts them all).
    pub fn take_dropped(&mut self) -> Vec<Dropped> {
        std::mem::take(&mut self.dropped)
    }

    /// Streams remembered.
    #[cfg(test)]
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// The offset of the first chunk of the oldest unfinished frame of
    /// `partition`: a consumer group must not commit past it, or a
    /// successor would start inside that frame.
    pub fn oldest_unfinished(&self, partition: i32) -> Option<i64> {
        self.streams
            .iter()
            .filter(|((p, _), _)| *p == partition)
            .filter_map(|(_, stream)| stream.partial.as_ref().map(|p| p.first_offset))
            .min()
    }

    /// After a seek or catch-up: unfinished frames are let go without
    /// counting them, and the next chunks of any frame count as joined
    /// mid-frame.
    pub fn repositioned(&mut self) {
        self.streams.clear();
        self.held = 0;
    }

    /// At the end of the stream: every unfinished frame is dropped.
    pub fn finish(&mut self) {
        let keys: Vec<(i32, u64)> = self.streams.keys().copied().collect();
        for key in keys {
            self.drop_partial(key, DropReason::Unfinished);
        }
    }

    /// A whole record of stream `stream` of `partition`: an unfinished
    /// frame of that stream will not be finished.
    pub fn whole_record(&mut self, partition: i32, stream: u64, stream_id: &str) {
        let key = (partition, stream);
        self.touch(key, stream_id);
        self.drop_partial(key, DropReason::Interrupted);
        if let Some(stream) = self.streams.get_mut(&key) {
            stream.skipping = None;
        }
    }

    /// Takes one chunk; `first` keeps what the caller needs of chunk 0
    /// (called only for a chunk 0 that starts a frame), `first_len` the
    /// bytes that keeps, counted against the bound.
    pub fn add(
        &mut self,
        chunk: ChunkRecord<'_>,
        first_len: usize,
        first: impl FnOnce() -> T,
    ) -> Outcome<T> {
        let key = (chunk.partition, chunk.stream);
        let seen = self.touch(key, chunk.stream_id);
        let (index, seq) = (chunk.chunk.index, chunk.seq);
        let redelivered = self.streams.get(&key).is_some_and(|stream| {
            stream
                .last_completed
                .and_then(|last| last.checked_sub(seq))
                .is_some_and(|behind| behind < REDELIVERY_WINDOW)
        });
        if redelivered {
            return Outcome::Ignored;
        }
        if let Some(partial) = self.streams.get_mut(&key).and_then(|s| s.partial.as_mut()) {
            // A chunk already taken, or one of an older frame: a redelivery.
            let older = seq < partial.seq && partial.seq - seq < REDELIVERY_WINDOW;
            if older || (partial.seq == seq && index < partial.next_index) {
                return Outcome::Ignored;
            }
            let fits = partial
                .frame
                .len()
                .checked_add(chunk.value.len())
                .is_some_and(|len| len as u64 <= partial.frame_size);
            let reason = if partial.seq != seq {
                Some(DropReason::Interrupted)
            } else if index > partial.next_index {
                Some(DropReason::ChunkMissing {
                    expected: partial.next_index,
                    got: index,
                })
            } else if chunk.chunk.count != partial.chunk_count
                || chunk.chunk.frame_size != partial.frame_size
                || !fits
            {
                Some(DropReason::Inconsistent)
            } else {
                None
            };
            match reason {
                None => {
                    partial.frame.extend_from_slice(chunk.value);
                    partial.next_index += 1;
                    return self.completed(key);
                }
                Some(reason) => {
                    self.drop_partial(key, reason);
                    // The rest of the broken frame says nothing more.
                    if belongs_to_broken_frame(reason) {
                        self.skip(key, seq);
                        return Outcome::Ignored;
                    }
                }
            }
        }
        if index > 0 {
            let Some(stream) = self.streams.get_mut(&key) else {
                return Outcome::Ignored;
            };
            if stream.joined == Some(seq) {
                return Outcome::JoinedMidFrame;
            }
            if stream.skipping == Some(seq) {
                return Outcome::Ignored;
            }
            if !seen {
                stream.joined = Some(seq);
                return Outcome::JoinedMidFrame;
            }
            stream.skipping = Some(seq);
            self.report(Dropped {
                partition: chunk.partition,
                stream_id: chunk.stream_id.to_string(),
                seq,
                first_offset: chunk.offset,
                frame_size: chunk.chunk.frame_size,
                chunks_received: 1,
                chunk_count: chunk.chunk.count,
                reason: DropReason::NoFirstChunk,
            });
            return Outcome::Ignored;
        }
        self.start(key, chunk, first_len, first)
    }

    /// Starts a frame with its chunk 0.
    fn start(
        &mut self,
        key: (i32, u64),
        chunk: ChunkRecord<'_>,
        first_len: usize,
        first: impl FnOnce() -> T,
    ) -> Outcome<T> {
        let held = chunk.chunk.frame_size.saturating_add(first_len as u64);
        let frame_len = usize::try_from(chunk.chunk.frame_size).ok();
        let too_large = held > self.max_bytes || frame_len.is_none();
        if too_large || chunk.value.len() as u64 > chunk.chunk.frame_size {
            self.skip(key, chunk.seq);
            self.report(Dropped {
                partition: chunk.partition,
                stream_id: chunk.stream_id.to_string(),
                seq: chunk.seq,
                first_offset: chunk.offset,
                frame_size: chunk.chunk.frame_size,
                chunks_received: 1,
                chunk_count: chunk.chunk.count,
                reason: if too_large {
                    DropReason::TooLarge
                } else {
                    DropReason::Inconsistent
                },
            });
            return Outcome::Ignored;
        }
        while self.held.saturating_add(held) > self.max_bytes {
            let Some(oldest) = self
                .streams
                .iter()
                .filter(|(_, stream)| stream.partial.is_some())
                .min_by_key(|(_, stream)| stream.last_used)
                .map(|(key, _)| *key)
            else {
                break;
            };
            self.drop_partial(oldest, DropReason::Evicted);
        }
        let mut frame = Vec::with_capacity(frame_len.unwrap_or_default());
        frame.extend_from_slice(chunk.value);
        self.held += held;
        if let Some(stream) = self.streams.get_mut(&key) {
            stream.skipping = None;
            stream.partial = Some(Partial {
                seq: chunk.seq,
                chunk_count: chunk.chunk.count,
                frame_size: chunk.chunk.frame_size,
                next_index: 1,
                first_offset: chunk.offset,
                frame,
                held,
                first: first(),
            });
        }
        self.completed(key)
    }

    /// Hands the frame of `key` out if it is complete.
    fn completed(&mut self, key: (i32, u64)) -> Outcome<T> {
        let Some(stream) = self.streams.get_mut(&key) else {
            return Outcome::Ignored;
        };
        let done = stream
            .partial
            .as_ref()
            .is_some_and(|p| p.next_index == p.chunk_count);
        if !done {
            return Outcome::Held;
        }
        let Some(partial) = stream.partial.take() else {
            return Outcome::Ignored;
        };
        stream.last_completed = Some(partial.seq);
        self.held = self.held.saturating_sub(partial.held);
        if partial.frame.len() as u64 != partial.frame_size {
            self.skip(key, partial.seq);
            self.report_partial(key, &partial, DropReason::Inconsistent);
            return Outcome::Ignored;
        }
        Outcome::Complete {
            frame: partial.frame,
            first_offset: partial.first_offset,
            first: partial.first,
        }
    }

    /// Remembers stream `key` as used now; whether it was known before.
    fn touch(&mut self, key: (i32, u64), stream_id: &str) -> bool {
        self.uses = self.uses.wrapping_add(1);
        if let Some(stream) = self.streams.get_mut(&key) {
            stream.last_used = self.uses;
            return true;
        }
        if self.streams.len() >= MAX_STREAMS
            && let Some(oldest) = self
                .streams
                .iter()
                .min_by_key(|(_, stream)| stream.last_used)
                .map(|(key, _)| *key)
        {
            self.drop_partial(oldest, DropReason::Evicted);
            self.streams.remove(&oldest);
        }
        self.streams.insert(
            key,
            Stream {
                stream_id: stream_id.to_string(),
                partial: None,
                skipping: None,
                joined: None,
                last_completed: None,
                last_used: self.uses,
            },
        );
        false
    }

    fn skip(&mut self, key: (i32, u64), seq: u64) {
        if let Some(stream) = self.streams.get_mut(&key) {
            stream.skipping = Some(seq);
        }
    }

    /// Drops the unfinished frame of `key`, if any, reporting why.
    fn drop_partial(&mut self, key: (i32, u64), reason: DropReason) {
        let Some(partial) = self.streams.get_mut(&key).and_then(|s| s.partial.take()) else {
            return;
        };
        self.held = self.held.saturating_sub(partial.held);
        if let Some(stream) = self.streams.get_mut(&key) {
            stream.skipping = Some(partial.seq);
        }
        self.report_partial(key, &partial, reason);
    }

    fn report_partial(&mut self, key: (i32, u64), partial: &Partial<T>, reason: DropReason) {
        let stream_id = self
            .streams
            .get(&key)
            .map(|s| s.stream_id.clone())
            .unwrap_or_default();
        self.report(Dropped {
            partition: key.0,
            stream_id,
            seq: partial.seq,
            first_offset: partial.first_offset,
            frame_size: partial.frame_size,
            chunks_received: partial.next_index,
            chunk_count: partial.chunk_count,
            reason,
        });
    }

    fn report(&mut self, dropped: Dropped) {
        self.drops = self.drops.saturating_add(1);
        if self.dropped.len() >= MAX_REPORTS {
            self.dropped.remove(0);
        }
        self.dropped.push(dropped);
    }
}

/// Whether a chunk that broke its frame for `reason` belongs to that frame
/// (and is skipped with it) rather than starting another.
fn belongs_to_broken_frame(reason: DropReason) -> bool {
    matches!(
        reason,
        DropReason::ChunkMissing { .. } | DropReason::Inconsistent
    )
}

#[cfg(test)]
mod tests;

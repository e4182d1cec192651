// SPDX-License-Identifier: MPL-2.0

//! kafkasrc's per-record logic, apart from GStreamer elements and Kafka
//! clients: stop conditions, reassembly of chunked frames (reassembly.rs),
//! per-stream sequence tracking, caps tracking and timestamping. It reads a borrowed view of one record and says what
//! to do with it; `imp.rs` turns that decision into a buffer. Every value
//! taken from a record is treated as hostile: arithmetic on it is checked,
//! and what the engine remembers is bounded whatever the records say.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::str::FromStr;
use std::time::Duration;

use gst::glib;

use super::reassembly::{ChunkRecord, Dropped, Outcome, Reassembly};
use crate::wireformat::{self, HeaderError, RecordMeta};

/// Most streams (`gst-stream-id`s) tracked at once. Each kafkasink run is
/// one stream, so a topic shared by a few hundred cameras stays well below
/// it; beyond it the stream seen least recently is forgotten, so that a
/// flood of forged ids costs at most this many entries (about 40 bytes
/// each: ids are kept as keyed hashes, not as text).
pub const MAX_TRACKS: usize = 1024;

/// A sequence number further than this from the previous one of its stream,
/// forward or back, is not a gap or a duplicate but a stream that started
/// over (or a forged record): it is pushed with DISCONT and does not become
/// a high-water mark that would make later genuine records look like
/// duplicates. Nine hours of records at 30 fps lost in one go is far
/// beyond any gap a live stream survives.
pub const MAX_SEQ_JUMP: u64 = 1 << 20;

/// How far behind the newest sequence number of its stream a record still
/// counts as a duplicate (a redelivery after a rebalance or restart: about
/// a second of records). Further behind, it is a stream that started over.
/// This also bounds what one forged record with a high sequence number can
/// cost: at most this many genuine records dropped as duplicates, instead
/// of every record until the stream catches up with the forged number.
pub const DUPLICATE_WINDOW: u64 = 1024;

/// Longest structure, field or caps feature name accepted in a record's
/// caps; real ones are a few dozen bytes.
pub const MAX_CAPS_NAME_LEN: usize = 256;

/// Names GLib had never seen that records' caps may bring in over the life
/// of one element. GLib keeps every structure and field name it parses for
/// the life of the process (as a GQuark), so caps with ever-new names would
/// grow memory without end; a genuine stream brings a few dozen. With
/// [`MAX_CAPS_NAME_LEN`] this bounds that growth to 1 MiB per element.
pub const MAX_NEW_CAPS_NAMES: usize = 4096;

/// One record as read from Kafka, borrowed: nothing is copied to look at it.
#[derive(Debug, Clone)]
pub struct Record<'a, H> {
    pub partition: i32,
    pub offset: i64,
    /// Record timestamp in ms since the Unix epoch, if it has one.
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// Header keys and values, in record order.
    pub headers: H,
}

/// What the engine needs from the element's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Only records with this key.
    pub key: Option<String>,
    /// Caps of records that carry none.
    pub default_caps: gst::Caps,
    /// `timestamp-mode=original`: PTS/DTS from the recording; otherwise the
    /// element stamps the running time on arrival.
    pub original_timestamps: bool,
    /// `stop-at=end`.
    pub stop_at_end: bool,
    /// `stop-at=timestamp`: records after this (ms since the epoch) end
    /// their partition.
    pub stop_time_ms: Option<i64>,
    /// Partitions read, each of which must pass stop-time before EOS.
    pub partitions: Vec<i32>,
    /// Bound of the bytes held for chunked frames not complete yet.
    pub max_partial_bytes: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub records_received: u64,
    pub bytes_received: u64,
    pub buffers_pushed: u64,
    pub skipped_to_keyframe: u64,
    pub skipped_lag: u64,
    pub filtered_key: u64,
    pub sequence_gaps: u64,
    pub lost_records: u64,
    pub duplicates: u64,
    pub stream_restarts: u64,
    pub bad_records: u64,
    /// Frames put together from chunk records and pushed.
    pub frames_reassembled: u64,
    /// Chunked frames dropped because a chunk of them never came (or the
    /// bound on what is held for them was exceeded).
    pub incomplete_frames: u64,
    /// Chunks of frames the reader joined in the middle of, not used.
    pub chunks_skipped: u64,
    /// Bytes held now for chunked frames not complete yet.
    pub partial_bytes: u64,
    pub latency_last_ms: i64,
    pub latency_max_ms: i64,
    pub last_partition: i32,
    pub last_offset: i64,
}

/// Why a record cannot be used at all (counted in `bad-records`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRecord {
    Empty,
    Headers(HeaderError),
    /// The caps header, shortened for display.
    Caps(String),
    /// Caps that would bring this many names GLib never saw, past
    /// [`MAX_NEW_CAPS_NAMES`].
    CapsNames(usize),
    /// In `original` mode, a timestamp (ms) that is no time GStreamer can
    /// hold (before 1970 or after 2554): the record cannot be placed on
    /// the timeline.
    Timestamp(i64),
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            BadRecord::Empty => write!(f, "empty record"),
            BadRecord::Headers(err) => write!(f, "{err}"),
            BadRecord::Caps(shown) => write!(f, "caps do not parse: {shown:?}"),
            BadRecord::CapsNames(count) => write!(
                f,
                "caps with {count} new field or structure names, over the {MAX_NEW_CAPS_NAMES} this element accepts"
            ),
            BadRecord::Timestamp(ms) => write!(
                f,
                "timestamp {ms} ms since the epoch is before 1970 or after 2554: it cannot be placed on the timeline"
            ),
        }
    }
}

/// Why a record is not pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Its partition is past stop-at, others still have records to give.
    PastStop,
    KeyFiltered,
    Duplicate,
    /// A delta unit before the first keyframe of its stream.
    BeforeKeyframe,
    /// A chunk of a frame: held until the frame is complete, or not used
    /// (redelivered, part of a frame joined mid-way or dropped).
    Chunk,
    Bad(BadRecord),
}

/// How the buffer is timestamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// The running time on arrival (`timestamp-mode=live`).
    Live,
    Original {
        pts: Option<gst::ClockTime>,
        dts: Option<gst::ClockTime>,
    },
}

/// A buffer to push.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// Caps to set before this buffer, when they changed.
    pub caps: Option<gst::Caps>,
    pub timing: Timing,
    pub duration: Option<gst::ClockTime>,
    pub flags: gst::BufferFlags,
    pub offset: u64,
    /// The record timestamp, when it is a representable time since the epoch.
    pub capture_time: Option<Duration>,
    /// A frame put together from chunk records: its bytes, which the
    /// buffer takes over. `None`: the buffer is the record's value.
    pub frame: Option<Vec<u8>>,
    /// The producer's stream id (`gst-stream-id`), if the record had one.
    pub stream_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Push(Push),
    Skip(Skip),
    Eos,
}

/// Per stream: the sequence seen last, whether a keyframe was pushed since
/// (re)joining it, and when it was last seen (for eviction).
#[derive(Debug, Default)]
struct Track {
    last_seq: Option<u64>,
    synced: bool,
    last_used: u64,
}

/// Maps record times to output PTS in `original` mode: the first record
/// pushed gets PTS 0, every later one its recorded distance from it.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// The anchor record's PTS header, if it had one.
    pts: Option<gst::ClockTime>,
    /// The anchor record's timestamp in ms since the epoch.
    wall_ms: i64,
}

/// The headers of a chunked frame's chunk 0, kept until its last chunk.
#[derive(Debug)]
struct FrameMeta {
    caps: Option<String>,
    stream_id: Option<String>,
    seq: Option<u64>,
    pts: Option<gst::ClockTime>,
    dts: Option<gst::ClockTime>,
    duration: Option<gst::ClockTime>,
    flags: gst::BufferFlags,
}

impl FrameMeta {
    fn new(meta: &RecordMeta) -> Self {
        FrameMeta {
            caps: meta.caps.map(str::to_string),
            stream_id: meta.stream_id.map(str::to_string),
            seq: meta.seq,
            pts: meta.pts,
            dts: meta.dts,
            duration: meta.duration,
            flags: meta.flags,
        }
    }

    /// The bytes it keeps beyond its fixed size, for the bound.
    fn kept_len(meta: &RecordMeta) -> usize {
        meta.caps.map_or(0, str::len) + meta.stream_id.map_or(0, str::len)
    }

    fn view(&self) -> RecordMeta<'_> {
        RecordMeta {
            caps: self.caps.as_deref(),
            stream_id: self.stream_id.as_deref(),
            seq: self.seq,
            pts: self.pts,
            dts: self.dts,
            duration: self.duration,
            flags: self.flags,
            chunk: None,
        }
    }
}

#[derive(Debug)]
pub struct Engine {
    config: Config,
    counters: Counters,
    /// Keyed by a keyed hash of the stream id: bounded size per entry, and
    /// a forger cannot choose collisions.
    tracks: HashMap<u64, Track>,
    hasher: RandomState,
    uses: u64,
    caps_text: Option<String>,
    caps_set: bool,
    /// Names GLib had not seen that parsing record caps brought in.
    new_caps_names: usize,
    /// stop-at=end: per partition, the offset where the topic ended at
    /// start; removed once reached.
    end_offsets: HashMap<i32, i64>,
    /// stop-at=timestamp: partitions that passed stop-time.
    passed_stop: HashSet<i32>,
    anchor: Option<Anchor>,
    discont: bool,
    reassembly: Reassembly<FrameMeta>,
}

/// `ms` as a clock time, if it is one (non-negative, and its nanoseconds
/// fit below GStreamer's NONE).
fn clock_time_ms(ms: i64) -> Option<gst::ClockTime> {
    let ns = u64::try_from(ms).ok()?.checked_mul(1_000_000)?;
    gst::ClockTime::try_from(ns).ok()
}

/// Whether a record with this timestamp is more than `max_lag_ms` old.
pub fn lags(timestamp_ms: Option<i64>, now_ms: i64, max_lag_ms: u32) -> bool {
    max_lag_ms > 0
        && timestamp_ms.is_some_and(|ms| now_ms.saturating_sub(ms) > i64::from(max_lag_ms))
}

impl Engine {
    pub fn new(config: Config, end_offsets: HashMap<i32, i64>) -> Self {
        let config_max_partial_bytes = config.max_partial_bytes;
        Engine {
            config,
            counters: Counters::default(),
            tracks: HashMap::new(),
            hasher: RandomState::new(),
            uses: 0,
            caps_text: None,
            caps_set: false,
            new_caps_names: 0,
            end_offsets,
            passed_stop: HashSet::new(),
            anchor: None,
            discont: true,
            reassembly: Reassembly::new(config_max_partial_bytes),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Records skipped by catching up with max-lag-ms.
    pub fn count_skipped_lag(&mut self, records: u64) {
        self.counters.skipped_lag = self.counters.skipped_lag.saturating_add(records);
    }

    /// Streams currently tracked (at most [`MAX_TRACKS`]).
    #[cfg(any(test, fuzzing))]
    pub fn tracked_streams(&self) -> usize {
        self.tracks.len()
    }

    /// After the consumer was repositioned (seek, catch-up): sequence and
    /// keyframe state start over, the next buffer is DISCONT, and chunked
    /// frames are read from their next chunk 0 (what was held is let go,
    /// not counted as lost).
    pub fn repositioned(&mut self) {
        self.tracks.clear();
        self.discont = true;
        self.reassembly.repositioned();
        self.counters.partial_bytes = 0;
    }

    /// At the end of the stream: chunked frames still incomplete are
    /// dropped and counted.
    pub fn finish(&mut self) {
        self.reassembly.finish();
        self.sync_reassembly();
    }

    /// Chunked frames dropped incomplete since the last call, for warnings.
    pub fn take_dropped(&mut self) -> Vec<Dropped> {
        self.reassembly.take_dropped()
    }

    /// The offset of the first chunk of the oldest frame of `partition`
    /// still being put together: what a consumer group may commit at most.
    pub fn oldest_unfinished(&self, partition: i32) -> Option<i64> {
        self.reassembly.oldest_unfinished(partition)
    }

    fn sync_reassembly(&mut self) {
        self.counters.incomplete_frames = self.reassembly.drops();
        self.counters.partial_bytes = self.reassembly.held_bytes();
    }

    /// Takes `last_seq` as the sequence number pushed last of stream
    /// `stream_id` (by a consumer group predecessor): records of that
    /// stream at or below it are duplicates from now on. A track that is
    /// already further keeps its own.
    pub fn seed_stream(&mut self, stream_id: &str, last_seq: u64) {
        let id = self.hasher.hash_one(stream_id);
        self.uses = self.uses.wrapping_add(1);
        let track = track(&mut self.tracks, id, self.uses);
        if track.last_seq.is_none_or(|seq| seq < last_seq) {
            track.last_seq = Some(last_seq);
        }
    }

    /// The record time (ms since the epoch) of stream position `position`
    /// in `original` mode, once a record has anchored the timeline.
    pub fn seek_target_ms(&self, position: gst::ClockTime) -> Option<i64> {
        let anchor = self.anchor?;
        let offset = i64::try_from(position.mseconds()).unwrap_or(i64::MAX);
        Some(anchor.wall_ms.saturating_add(offset))
    }

    pub fn is_anchored(&self) -> bool {
        self.anchor.is_some()
    }

    /// Whether every stop condition is met: EOS.
    pub fn at_eos(&self) -> bool {
        let all_passed = self.config.stop_time_ms.is_some()
            && self
                .config
                .partitions
                .iter()
                .all(|p| self.passed_stop.contains(p));
        let at_end = self.config.stop_at_end && self.end_offsets.is_empty();
        all_passed || at_end
    }

    fn past_stop(&self) -> Decision {
        if self.at_eos() {
            Decision::Eos
        } else {
            Decision::Skip(Skip::PastStop)
        }
    }

    fn bad(&mut self, why: BadRecord) -> Decision {
        self.counters.bad_records = self.counters.bad_records.saturating_add(1);
        Decision::Skip(Skip::Bad(why))
    }

    /// Decides what becomes of one record; `now_ms` is the wall clock in
    /// ms since the epoch.
    pub fn process<'a, H>(&mut self, record: Record<'a, H>, now_ms: i64) -> Decision
    where
        H: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let partition = record.partition;
        let offset = record.offset;

        if let Some(end) = self.end_offsets.get(&partition).copied() {
            if offset >= end.saturating_sub(1) {
                self.end_offsets.remove(&partition);
            }
            if offset >= end {
                return self.past_stop();
            }
        } else if self.config.stop_at_end {
            // A partition already at its end: records produced after start.
            return self.past_stop();
        }
        if let Some(stop_ms) = self.config.stop_time_ms
            && record.timestamp_ms.is_some_and(|ms| ms > stop_ms)
        {
            // Only partitions read count: the set stays bounded.
            if self.config.partitions.contains(&partition) {
                self.passed_stop.insert(partition);
            }
            return self.past_stop();
        }

        let counters = &mut self.counters;
        counters.records_received = counters.records_received.saturating_add(1);
        counters.last_partition = partition;
        counters.last_offset = offset;
        counters.bytes_received = counters
            .bytes_received
            .saturating_add(record.payload.len() as u64);

        if let Some(key) = &self.config.key
            && record.key != Some(key.as_bytes())
        {
            counters.filtered_key = counters.filtered_key.saturating_add(1);
            return Decision::Skip(Skip::KeyFiltered);
        }
        if record.payload.is_empty() {
            return self.bad(BadRecord::Empty);
        }
        let meta = match wireformat::decode(record.headers) {
            Ok(meta) => meta,
            Err(err) => return self.bad(BadRecord::Headers(err)),
        };
        let stream_id = meta.stream_id.unwrap_or_default();
        let Some(chunk) = meta.chunk else {
            if meta.stream_id.is_some() {
                let stream = self.hasher.hash_one(stream_id);
                self.reassembly.whole_record(partition, stream, stream_id);
                self.sync_reassembly();
            }
            return self.decide(&meta, record.timestamp_ms, offset, None, now_ms);
        };
        let stream = self.hasher.hash_one(stream_id);
        let outcome = self.reassembly.add(
            ChunkRecord {
                partition,
                offset,
                stream,
                stream_id,
                seq: meta.seq.unwrap_or_default(),
                chunk,
                value: record.payload,
            },
            FrameMeta::kept_len(&meta),
            || FrameMeta::new(&meta),
        );
        self.sync_reassembly();
        match outcome {
            Outcome::Complete {
                frame,
                first_offset,
                first,
            } => {
                let decision = self.decide(
                    &first.view(),
                    record.timestamp_ms,
                    first_offset,
                    Some(frame),
                    now_ms,
                );
                if matches!(decision, Decision::Push(_)) {
                    self.counters.frames_reassembled =
                        self.counters.frames_reassembled.saturating_add(1);
                }
                decision
            }
            Outcome::JoinedMidFrame => {
                self.counters.chunks_skipped = self.counters.chunks_skipped.saturating_add(1);
                Decision::Skip(Skip::Chunk)
            }
            Outcome::Held | Outcome::Ignored => Decision::Skip(Skip::Chunk),
        }
    }

    /// Decides what becomes of a frame: a record's, or one put together
    /// from chunks (`frame`), whose first record is at `offset`.
    fn decide(
        &mut self,
        meta: &RecordMeta,
        timestamp_ms: Option<i64>,
        offset: i64,
        frame: Option<Vec<u8>>,
        now_ms: i64,
    ) -> Decision {
        // Everything that can make the record bad is decided before the
        // sequence bookkeeping, so that a bad record changes no state.
        let new_caps = match self.caps_change(meta) {
            Ok(caps) => caps,
            Err(why) => return self.bad(why),
        };
        let candidate_anchor = Anchor {
            pts: meta.pts,
            wall_ms: timestamp_ms.unwrap_or(now_ms),
        };
        let timing = if self.config.original_timestamps {
            // Both this timestamp and the anchor's are then representable,
            // so is any distance between them.
            if let Some(ms) = timestamp_ms
                && clock_time_ms(ms).is_none()
            {
                return self.bad(BadRecord::Timestamp(ms));
            }
            let anchor = self.anchor.unwrap_or(candidate_anchor);
            let (pts, dts) = original_times(&anchor, meta, timestamp_ms, now_ms);
            Timing::Original { pts, dts }
        } else {
            Timing::Live
        };

        if let Some(skip) = self.check_sequence(meta) {
            return Decision::Skip(skip);
        }

        if let Some((text, _)) = &new_caps {
            self.caps_text = text.map(str::to_string);
        }
        self.caps_set = true;
        if self.config.original_timestamps && self.anchor.is_none() {
            self.anchor = Some(candidate_anchor);
        }
        let mut flags = meta.flags & !gst::BufferFlags::DISCONT;
        if std::mem::take(&mut self.discont) || meta.flags.contains(gst::BufferFlags::DISCONT) {
            flags |= gst::BufferFlags::DISCONT;
        }
        let counters = &mut self.counters;
        if let Some(ms) = timestamp_ms {
            let latency = now_ms.saturating_sub(ms);
            counters.latency_last_ms = latency;
            counters.latency_max_ms = counters.latency_max_ms.max(latency);
        }
        counters.buffers_pushed = counters.buffers_pushed.saturating_add(1);
        Decision::Push(Push {
            caps: new_caps.map(|(_, caps)| caps),
            timing,
            duration: meta.duration,
            flags,
            offset: u64::try_from(offset).unwrap_or(u64::MAX),
            capture_time: timestamp_ms
                .and_then(clock_time_ms)
                .map(|time| Duration::from_nanos(time.nseconds())),
            frame,
            stream_id: meta.stream_id.map(str::to_owned),
        })
    }

    /// The caps to set before this record's buffer, with the caps text to
    /// remember (`None` for the default caps), if they change.
    #[allow(clippy::type_complexity)]
    fn caps_change<'m>(
        &mut self,
        meta: &RecordMeta<'m>,
    ) -> Result<Option<(Option<&'m str>, gst::Caps)>, BadRecord> {
        match meta.caps {
            Some(text) if self.caps_text.as_deref() != Some(text) => {
                let bad = || BadRecord::Caps(text.chars().take(80).collect());
                let names = caps_names(text).ok_or_else(bad)?;
                if names.iter().any(|name| name.len() > MAX_CAPS_NAME_LEN) {
                    return Err(bad());
                }
                let mut unknown: Vec<&str> = names
                    .into_iter()
                    .filter(|name| glib::Quark::try_from_str(name).is_none())
                    .collect();
                unknown.sort_unstable();
                unknown.dedup();
                let new_names = self.new_caps_names.saturating_add(unknown.len());
                if new_names > MAX_NEW_CAPS_NAMES {
                    return Err(BadRecord::CapsNames(unknown.len()));
                }
                // Parsing interns the names whether or not the caps are used.
                self.new_caps_names = new_names;
                match gst::Caps::from_str(text) {
                    Ok(caps) if caps.is_fixed() => Ok(Some((Some(text), caps))),
                    _ => Err(bad()),
                }
            }
            Some(_) => Ok(None),
            None if !self.caps_set || self.caps_text.is_some() => {
                Ok(Some((None, self.config.default_caps.clone())))
            }
            None => Ok(None),
        }
    }

    /// Sequence and keyframe bookkeeping; `Some` when the record is not to
    /// be pushed.
    fn check_sequence(&mut self, meta: &RecordMeta) -> Option<Skip> {
        let id = self.hasher.hash_one(meta.stream_id.unwrap_or_default());
        self.uses = self.uses.wrapping_add(1);
        let track = track(&mut self.tracks, id, self.uses);
        let counters = &mut self.counters;
        let mut discont = false;
        if let Some(seq) = meta.seq {
            if let Some(last) = track.last_seq {
                let restart = seq.abs_diff(last) > MAX_SEQ_JUMP
                    || last
                        .checked_sub(seq)
                        .is_some_and(|behind| behind >= DUPLICATE_WINDOW);
                if restart {
                    counters.stream_restarts = counters.stream_restarts.saturating_add(1);
                    discont = true;
                } else if seq <= last {
                    counters.duplicates = counters.duplicates.saturating_add(1);
                    return Some(Skip::Duplicate);
                } else if seq - last > 1 {
                    counters.sequence_gaps = counters.sequence_gaps.saturating_add(1);
                    counters.lost_records = counters.lost_records.saturating_add(seq - last - 1);
                    discont = true;
                }
            }
            track.last_seq = Some(seq);
        }
        if !track.synced {
            if meta.flags.contains(gst::BufferFlags::DELTA_UNIT) {
                counters.skipped_to_keyframe = counters.skipped_to_keyframe.saturating_add(1);
                self.discont |= discont;
                return Some(Skip::BeforeKeyframe);
            }
            track.synced = true;
            discont = true;
        }
        self.discont |= discont;
        None
    }
}

/// The structure, caps feature and field names in caps `text`, or `None`
/// when GStreamer's parser must not see it: gstreamer-rs panics on a NUL
/// byte; GStreamer logs a CRITICAL or WARNING for a structure name that
/// does not start with a letter and for a malformed feature name (hostile
/// records must not flood the log); and values of nested structure, caps or
/// tag list types would intern names this scan does not see.
fn caps_names(text: &str) -> Option<Vec<&str>> {
    if text.contains('\0') {
        return None;
    }
    let valid_feature = |name: &str| {
        let mut parts = name.trim().split(':');
        let part_ok = |part: Option<&str>| {
            part.is_some_and(|part| {
                part.starts_with(|c: char| c.is_ascii_alphabetic())
                    && part.chars().all(|c| c.is_ascii_alphanumeric())
            })
        };
        part_ok(parts.next()) && part_ok(parts.next()) && parts.next().is_none()
    };
    let nested = |cast: &str| {
        let cast = cast.to_ascii_lowercase();
        ["structure", "caps", "tag", "sample"]
            .iter()
            .any(|kind| cast.contains(kind))
    };
    let mut names = Vec::new();
    let mut rest = text;
    loop {
        // At the start of a structure: its name, then its features.
        rest = rest.trim_start();
        if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return None;
        }
        let name_end = rest
            .find(|c: char| matches!(c, ',' | ';' | '(') || c.is_whitespace())
            .unwrap_or(rest.len());
        names.push(&rest[..name_end]);
        rest = rest[name_end..].trim_start();
        if let Some(features) = rest.strip_prefix('(') {
            let close = features.find(')')?;
            for feature in features[..close].split(',') {
                if !valid_feature(feature) {
                    return None;
                }
                names.push(feature.trim());
            }
            rest = &features[close + 1..];
        }
        // Its fields, up to the next structure: a name before each `=` that
        // follows a top-level comma. Quoted strings are skipped.
        let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
        let mut field_start = None;
        let mut cast_start = None;
        let mut next = None;
        for (i, c) in rest.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                '"' => quoted = !quoted,
                _ if quoted => (),
                '(' => cast_start = Some(i + 1),
                ')' if cast_start
                    .take()
                    .is_some_and(|start| nested(&rest[start..i])) =>
                {
                    return None;
                }
                '{' | '[' | '<' => depth += 1,
                '}' | ']' | '>' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => field_start = Some(i + 1),
                '=' if depth == 0 => {
                    if let Some(start) = field_start.take() {
                        names.push(rest[start..i].trim());
                    }
                }
                ';' if depth == 0 => {
                    next = Some(i + 1);
                    break;
                }
                _ => (),
            }
        }
        match next {
            Some(start) => rest = &rest[start..],
            None => return Some(names),
        }
    }
}

/// The track of stream `id`, created if new (forgetting the least recently
/// seen one when [`MAX_TRACKS`] are tracked).
fn track(tracks: &mut HashMap<u64, Track>, id: u64, uses: u64) -> &mut Track {
    if !tracks.contains_key(&id)
        && tracks.len() >= MAX_TRACKS
        && let Some(oldest) = tracks
            .iter()
            .min_by_key(|(_, track)| track.last_used)
            .map(|(id, _)| *id)
    {
        tracks.remove(&oldest);
    }
    let track = tracks.entry(id).or_default();
    track.last_used = uses;
    track
}

/// PTS and DTS in `original` mode: the recorded spacing from the anchor,
/// from the PTS/DTS headers of the anchor's stream, otherwise from record
/// timestamps. Records before the anchor get no PTS.
fn original_times(
    anchor: &Anchor,
    meta: &RecordMeta,
    timestamp_ms: Option<i64>,
    now_ms: i64,
) -> (Option<gst::ClockTime>, Option<gst::ClockTime>) {
    let shift = |time: gst::ClockTime, base: gst::ClockTime| time.checked_sub(base);
    match (anchor.pts, meta.pts) {
        (Some(base), Some(pts)) => (shift(pts, base), meta.dts.and_then(|dts| shift(dts, base))),
        _ => {
            let wall_ms = timestamp_ms.unwrap_or(now_ms);
            let pts = wall_ms.checked_sub(anchor.wall_ms).and_then(clock_time_ms);
            (pts, None)
        }
    }
}

#[cfg(test)]
mod tests;

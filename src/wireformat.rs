// SPDX-License-Identifier: MPL-2.0

//! The record headers `kafkasink` writes and `kafkasrc` reads: version 1 for
//! a frame in one record, version 2 for a chunk of a frame larger than
//! Kafka's record limit. docs/wire-format.md is the specification; this is
//! its only implementation.

use std::fmt;

pub const VERSION: &str = "1";
/// The version of a record holding one chunk of a frame: a reader of
/// version 1 refuses it rather than taking a piece for a frame.
pub const CHUNK_VERSION: &str = "2";

pub const VERSION_KEY: &str = "gst-version";
pub const CAPS_KEY: &str = "gst-caps";
pub const STREAM_ID_KEY: &str = "gst-stream-id";
pub const SEQ_KEY: &str = "gst-seq";
pub const PTS_KEY: &str = "gst-pts";
pub const DTS_KEY: &str = "gst-dts";
pub const DURATION_KEY: &str = "gst-duration";
pub const FLAGS_KEY: &str = "gst-flags";
pub const CHUNK_INDEX_KEY: &str = "gst-chunk-index";
/// The header a plain client checks to recognise a chunk.
pub const CHUNK_COUNT_KEY: &str = "gst-chunk-count";
pub const FRAME_SIZE_KEY: &str = "gst-frame-size";

/// Longest caps or stream id accepted from a record: anything longer is a
/// corrupt or hostile record, not a stream description.
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// Buffer flags carried on the wire, by their wire names.
const FLAG_NAMES: [(gst::BufferFlags, &str); 6] = [
    (gst::BufferFlags::DELTA_UNIT, "delta-unit"),
    (gst::BufferFlags::DISCONT, "discont"),
    (gst::BufferFlags::HEADER, "header"),
    (gst::BufferFlags::GAP, "gap"),
    (gst::BufferFlags::DROPPABLE, "droppable"),
    (gst::BufferFlags::MARKER, "marker"),
];

/// Where a chunk record's value goes in its frame: chunk `index` of
/// `count`, of a frame of `frame_size` bytes. The frame is named by the
/// record's stream id and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub index: u64,
    pub count: u64,
    pub frame_size: u64,
}

/// What the headers of one record say about its buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta<'a> {
    pub caps: Option<&'a str>,
    pub stream_id: Option<&'a str>,
    pub seq: Option<u64>,
    pub pts: Option<gst::ClockTime>,
    pub dts: Option<gst::ClockTime>,
    pub duration: Option<gst::ClockTime>,
    pub flags: gst::BufferFlags,
    /// Set on a chunk (version 2), whose stream id and seq are then set too.
    pub chunk: Option<Chunk>,
}

impl RecordMeta<'_> {
    /// Whether a decoder can start at this record: no `delta-unit` flag,
    /// and for a chunked frame its chunk 0, which carries the frame's flags.
    pub fn starts_keyframe(&self) -> bool {
        self.chunk.is_none_or(|chunk| chunk.index == 0)
            && !self.flags.contains(gst::BufferFlags::DELTA_UNIT)
    }
}

impl Default for RecordMeta<'_> {
    fn default() -> Self {
        RecordMeta {
            caps: None,
            stream_id: None,
            seq: None,
            pts: None,
            dts: None,
            duration: None,
            flags: gst::BufferFlags::empty(),
            chunk: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    UnsupportedVersion(String),
    NotText(&'static str),
    TooLong(&'static str, usize),
    BadNumber(&'static str, String),
    UnknownFlag(String),
    /// A version 2 record whose chunk headers are missing or contradict
    /// each other.
    BadChunk(&'static str),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            HeaderError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported wire format version {v:?} (this build reads {VERSION} and {CHUNK_VERSION})"
                )
            }
            HeaderError::NotText(key) => write!(f, "header {key} is not UTF-8 text"),
            HeaderError::TooLong(key, len) => {
                write!(
                    f,
                    "header {key} is {len} bytes, over the {MAX_TEXT_LEN} byte limit"
                )
            }
            HeaderError::BadNumber(key, value) => {
                write!(f, "header {key} is not a number: {value:?}")
            }
            HeaderError::UnknownFlag(flag) => {
                write!(f, "header {FLAGS_KEY} has unknown flag {flag:?}")
            }
            HeaderError::BadChunk(why) => write!(f, "chunk record: {why}"),
        }
    }
}

impl std::error::Error for HeaderError {}

fn text<'a>(key: &'static str, value: &'a [u8]) -> Result<&'a str, HeaderError> {
    if value.len() > MAX_TEXT_LEN {
        return Err(HeaderError::TooLong(key, value.len()));
    }
    std::str::from_utf8(value).map_err(|_| HeaderError::NotText(key))
}

fn number(key: &'static str, value: &[u8]) -> Result<u64, HeaderError> {
    // Only plain ASCII digits: no sign, no spaces, at most u64::MAX.
    let bad = || {
        HeaderError::BadNumber(
            key,
            String::from_utf8_lossy(&value[..value.len().min(32)]).into(),
        )
    };
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(value)
        .map_err(|_| bad())?
        .parse()
        .map_err(|_| bad())
}

fn clock_time(key: &'static str, value: &[u8]) -> Result<gst::ClockTime, HeaderError> {
    let ns = number(key, value)?;
    gst::ClockTime::try_from(ns).map_err(|_| HeaderError::BadNumber(key, ns.to_string()))
}

fn flags(value: &[u8]) -> Result<gst::BufferFlags, HeaderError> {
    let value = text(FLAGS_KEY, value)?;
    let mut flags = gst::BufferFlags::empty();
    for name in value.split(',').filter(|name| !name.is_empty()) {
        let (flag, _) = FLAG_NAMES
            .iter()
            .find(|(_, wire)| *wire == name)
            .ok_or_else(|| HeaderError::UnknownFlag(name.chars().take(32).collect()))?;
        flags |= *flag;
    }
    Ok(flags)
}

/// Reads the headers of one record. Headers this version does not know are
/// ignored so that later versions can add some; a header with no value
/// counts as absent. Chunk headers count only on a version 2 record, which
/// must have all of them, a stream id and a sequence number.
pub fn decode<'a>(
    headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Result<RecordMeta<'a>, HeaderError> {
    let mut meta = RecordMeta::default();
    let mut chunked = false;
    let (mut index, mut count, mut frame_size) = (None, None, None);
    for (key, value) in headers {
        let Some(value) = value else { continue };
        match key {
            VERSION_KEY if value == CHUNK_VERSION.as_bytes() => chunked = true,
            VERSION_KEY if value == VERSION.as_bytes() => chunked = false,
            VERSION_KEY => {
                let shown = &value[..value.len().min(16)];
                return Err(HeaderError::UnsupportedVersion(
                    String::from_utf8_lossy(shown).into(),
                ));
            }
            CAPS_KEY => meta.caps = Some(text(CAPS_KEY, value)?),
            STREAM_ID_KEY => meta.stream_id = Some(text(STREAM_ID_KEY, value)?),
            SEQ_KEY => meta.seq = Some(number(SEQ_KEY, value)?),
            PTS_KEY => meta.pts = Some(clock_time(PTS_KEY, value)?),
            DTS_KEY => meta.dts = Some(clock_time(DTS_KEY, value)?),
            DURATION_KEY => meta.duration = Some(clock_time(DURATION_KEY, value)?),
            FLAGS_KEY => meta.flags = flags(value)?,
            CHUNK_INDEX_KEY => index = Some(number(CHUNK_INDEX_KEY, value)?),
            CHUNK_COUNT_KEY => count = Some(number(CHUNK_COUNT_KEY, value)?),
            FRAME_SIZE_KEY => frame_size = Some(number(FRAME_SIZE_KEY, value)?),
            _ => (),
        }
    }
    if chunked {
        meta.chunk = Some(chunk(&meta, index, count, frame_size)?);
    }
    Ok(meta)
}

/// The chunk a version 2 record holds, once its headers are all read.
fn chunk(
    meta: &RecordMeta,
    index: Option<u64>,
    count: Option<u64>,
    frame_size: Option<u64>,
) -> Result<Chunk, HeaderError> {
    let (Some(index), Some(count), Some(frame_size)) = (index, count, frame_size) else {
        return Err(HeaderError::BadChunk(
            "gst-chunk-index, gst-chunk-count or gst-frame-size missing",
        ));
    };
    if meta.stream_id.is_none() || meta.seq.is_none() {
        return Err(HeaderError::BadChunk("no gst-stream-id or gst-seq"));
    }
    if index >= count {
        return Err(HeaderError::BadChunk(
            "gst-chunk-index not below gst-chunk-count",
        ));
    }
    if frame_size < count {
        return Err(HeaderError::BadChunk("fewer frame bytes than chunks"));
    }
    Ok(Chunk {
        index,
        count,
        frame_size,
    })
}

/// The wire value of the flags worth carrying, or `None` when there are none.
pub fn encode_flags(flags: gst::BufferFlags) -> Option<String> {
    let names: Vec<&str> = FLAG_NAMES
        .iter()
        .filter(|(flag, _)| flags.contains(*flag))
        .map(|(_, name)| *name)
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// Formats `value` in decimal into `buf` without allocating.
pub fn encode_number(value: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut pos = buf.len();
    let mut rest = value;
    loop {
        pos -= 1;
        buf[pos] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &buf[pos..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        let mut buf = [0; 20];
        for value in [0, 7, 10, 1_000_000_007, u64::MAX] {
            let encoded = encode_number(value, &mut buf).to_vec();
            assert_eq!(encoded, value.to_string().into_bytes());
            assert_eq!(number(SEQ_KEY, &encoded), Ok(value));
        }
    }

    #[test]
    fn decodes_every_field() {
        let headers: Vec<(&str, Option<&[u8]>)> = vec![
            (VERSION_KEY, Some(b"1")),
            (CAPS_KEY, Some(b"image/jpeg, width=(int)320")),
            (STREAM_ID_KEY, Some(b"cam1")),
            (SEQ_KEY, Some(b"42")),
            (PTS_KEY, Some(b"33333333")),
            (DTS_KEY, Some(b"0")),
            (DURATION_KEY, Some(b"33333334")),
            (FLAGS_KEY, Some(b"delta-unit,discont")),
            ("someone-else", Some(b"\xff")),
            (CAPS_KEY, None),
        ];
        let meta = decode(headers).unwrap();
        assert_eq!(meta.caps, Some("image/jpeg, width=(int)320"));
        assert_eq!(meta.stream_id, Some("cam1"));
        assert_eq!(meta.seq, Some(42));
        assert_eq!(meta.pts, Some(gst::ClockTime::from_nseconds(33_333_333)));
        assert_eq!(meta.dts, Some(gst::ClockTime::ZERO));
        assert_eq!(
            meta.duration,
            Some(gst::ClockTime::from_nseconds(33_333_334))
        );
        assert_eq!(
            meta.flags,
            gst::BufferFlags::DELTA_UNIT | gst::BufferFlags::DISCONT
        );
    }

    #[test]
    fn plain_records_are_not_framed() {
        let meta = decode(Vec::<(&str, Option<&[u8]>)>::new()).unwrap();
        assert_eq!(meta, RecordMeta::default());
    }

    #[test]
    fn rejects_garbage() {
        let cases: Vec<(&str, &[u8])> = vec![
            (VERSION_KEY, b"3"),
            (SEQ_KEY, b"-1"),
            (SEQ_KEY, b""),
            (SEQ_KEY, b"99999999999999999999"),
            (PTS_KEY, b"18446744073709551615"),
            (PTS_KEY, b" 1"),
            (CAPS_KEY, b"\xff\xfe"),
            (FLAGS_KEY, b"keyframe"),
        ];
        for (key, value) in cases {
            assert!(
                decode([(key, Some(value))]).is_err(),
                "{key}={value:?} accepted"
            );
        }
        let long = vec![b'a'; MAX_TEXT_LEN + 1];
        assert_eq!(
            decode([(CAPS_KEY, Some(&long[..]))]),
            Err(HeaderError::TooLong(CAPS_KEY, MAX_TEXT_LEN + 1))
        );
    }

    #[test]
    fn chunks_are_version_2_with_every_chunk_header() {
        let chunk: [(&str, Option<&[u8]>); 6] = [
            (VERSION_KEY, Some(b"2")),
            (STREAM_ID_KEY, Some(b"cam1")),
            (SEQ_KEY, Some(b"9")),
            (CHUNK_INDEX_KEY, Some(b"1")),
            (CHUNK_COUNT_KEY, Some(b"3")),
            (FRAME_SIZE_KEY, Some(b"3000000")),
        ];
        assert_eq!(
            decode(chunk).unwrap().chunk,
            Some(Chunk {
                index: 1,
                count: 3,
                frame_size: 3_000_000
            })
        );
        // Chunk headers on a version 1 record mean nothing.
        let mut whole = chunk;
        whole[0].1 = Some(b"1");
        assert_eq!(decode(whole).unwrap().chunk, None);
        for (at, value) in [
            (1, None),
            (2, None),
            (3, None),
            (4, None),
            (5, None),
            (3, Some(&b"3"[..])),
            (5, Some(&b"2"[..])),
        ] {
            let mut broken = chunk;
            broken[at].1 = value;
            assert!(
                matches!(decode(broken), Err(HeaderError::BadChunk(_))),
                "{broken:?} accepted"
            );
        }
    }

    #[test]
    fn flags_round_trip() {
        gst::init().unwrap();
        let all = FLAG_NAMES
            .iter()
            .fold(gst::BufferFlags::empty(), |acc, (f, _)| acc | *f);
        let wire = encode_flags(all | gst::BufferFlags::LIVE).unwrap();
        assert_eq!(flags(wire.as_bytes()), Ok(all));
        assert_eq!(encode_flags(gst::BufferFlags::LIVE), None);
    }
}

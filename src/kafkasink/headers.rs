// SPDX-License-Identifier: MPL-2.0

//! The record headers `kafkasink` writes (docs/wire-format.md) and the size
//! of the record they are part of.

use std::sync::Arc;

use rdkafka::message::{Header, OwnedHeaders};

use crate::wireformat;

/// Bytes a record adds to its key, value and headers in the worst case: the
/// header of a record batch holding it alone, and the record's own varint
/// lengths, attributes and deltas (librdkafka counts the latter, brokers
/// the whole batch).
const RECORD_OVERHEAD: usize = 61 + 36;
/// Bytes a header adds to its key and value: two varint lengths.
const HEADER_OVERHEAD: usize = 10;

/// The most the chunk headers add to a record: three numbers of up to 20
/// digits.
pub const CHUNK_HEADERS_MAX_LEN: usize = 3 * (HEADER_OVERHEAD + 20)
    + wireformat::CHUNK_INDEX_KEY.len()
    + wireformat::CHUNK_COUNT_KEY.len()
    + wireformat::FRAME_SIZE_KEY.len();

/// The size of a record as Kafka's limits count it, at most.
pub fn record_size(key_len: usize, value_len: usize, headers_len: usize) -> usize {
    RECORD_OVERHEAD
        .saturating_add(key_len)
        .saturating_add(value_len)
        .saturating_add(headers_len)
}

/// Caps whose text no reader would accept in a record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapsTooLong(pub usize);

/// The headers of one record, and how many bytes they add to it.
pub struct RecordHeaders {
    pub headers: OwnedHeaders,
    pub len: usize,
}

impl RecordHeaders {
    fn insert(mut self, key: &str, value: &[u8]) -> Self {
        self.len += HEADER_OVERHEAD + key.len() + value.len();
        self.headers = self.headers.insert(Header {
            key,
            value: Some(value),
        });
        self
    }
}

/// Writes the headers of one stream's records.
#[derive(Debug, Clone)]
pub struct HeaderWriter {
    stream_id: Arc<str>,
    /// The current caps as text, serialized once per caps change.
    caps: Option<Arc<str>>,
}

impl HeaderWriter {
    pub fn new(stream_id: Arc<str>) -> Self {
        HeaderWriter {
            stream_id,
            caps: None,
        }
    }

    /// Takes new caps for the following records. Caps longer than a reader
    /// accepts (a large `streamheader` or `codec_data`) are refused.
    pub fn set_caps(&mut self, caps: &gst::CapsRef) -> Result<(), CapsTooLong> {
        let text = caps.to_string();
        if text.len() > wireformat::MAX_TEXT_LEN {
            return Err(CapsTooLong(text.len()));
        }
        self.caps = Some(text.into());
        Ok(())
    }

    /// The headers of a record holding the whole of `buffer`.
    pub fn headers(&self, seq: u64, buffer: &gst::BufferRef) -> RecordHeaders {
        self.build(wireformat::VERSION, seq, Some(buffer), None)
    }

    /// The headers of a chunk of frame `seq`; `buffer`, the frame's, is
    /// given for chunk 0, which alone carries its caps, times and flags.
    pub fn chunk_headers(
        &self,
        seq: u64,
        chunk: wireformat::Chunk,
        buffer: Option<&gst::BufferRef>,
    ) -> RecordHeaders {
        self.build(wireformat::CHUNK_VERSION, seq, buffer, Some(chunk))
    }

    fn build(
        &self,
        version: &str,
        seq: u64,
        buffer: Option<&gst::BufferRef>,
        chunk: Option<wireformat::Chunk>,
    ) -> RecordHeaders {
        let mut number = [0u8; 20];
        let mut headers = RecordHeaders {
            headers: OwnedHeaders::new_with_capacity(11),
            len: 0,
        }
        .insert(wireformat::VERSION_KEY, version.as_bytes())
        .insert(wireformat::STREAM_ID_KEY, self.stream_id.as_bytes())
        .insert(
            wireformat::SEQ_KEY,
            wireformat::encode_number(seq, &mut number),
        );
        if let Some(chunk) = chunk {
            for (key, value) in [
                (wireformat::CHUNK_INDEX_KEY, chunk.index),
                (wireformat::CHUNK_COUNT_KEY, chunk.count),
                (wireformat::FRAME_SIZE_KEY, chunk.frame_size),
            ] {
                headers = headers.insert(key, wireformat::encode_number(value, &mut number));
            }
        }
        let Some(buffer) = buffer else {
            return headers;
        };
        if let Some(caps) = &self.caps {
            headers = headers.insert(wireformat::CAPS_KEY, caps.as_bytes());
        }
        for (key, time) in [
            (wireformat::PTS_KEY, buffer.pts()),
            (wireformat::DTS_KEY, buffer.dts()),
            (wireformat::DURATION_KEY, buffer.duration()),
        ] {
            if let Some(time) = time {
                headers =
                    headers.insert(key, wireformat::encode_number(time.nseconds(), &mut number));
            }
        }
        if let Some(flags) = wireformat::encode_flags(buffer.flags()) {
            headers = headers.insert(wireformat::FLAGS_KEY, flags.as_bytes());
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Headers;

    #[test]
    fn headers_decode_and_their_length_is_counted() {
        gst::init().unwrap();
        let mut writer = HeaderWriter::new("cam-1".into());
        writer
            .set_caps(&gst::Caps::new_empty_simple("image/jpeg"))
            .unwrap();
        let mut buffer = gst::Buffer::new();
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(gst::ClockTime::from_mseconds(40));
            buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
        let written = writer.headers(7, &buffer);
        let pairs: Vec<(&str, Option<&[u8]>)> = written
            .headers
            .iter()
            .map(|header| (header.key, header.value))
            .collect();
        let meta = wireformat::decode(pairs.iter().copied()).unwrap();
        assert_eq!(meta.stream_id, Some("cam-1"));
        assert_eq!(meta.seq, Some(7));
        assert_eq!(meta.caps, Some("image/jpeg"));
        assert_eq!(meta.pts, Some(gst::ClockTime::from_mseconds(40)));
        assert_eq!(meta.flags, gst::BufferFlags::DELTA_UNIT);
        let raw: usize = pairs
            .iter()
            .map(|(key, value)| key.len() + value.map_or(0, <[u8]>::len))
            .sum();
        assert_eq!(written.len, raw + HEADER_OVERHEAD * pairs.len());
    }

    #[test]
    fn chunk_headers_decode_and_stay_within_their_bound() {
        gst::init().unwrap();
        let mut writer = HeaderWriter::new("cam-1".into());
        writer
            .set_caps(&gst::Caps::new_empty_simple("image/jpeg"))
            .unwrap();
        let mut buffer = gst::Buffer::new();
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(40));
        let whole = writer.headers(u64::MAX, &buffer);
        let chunk = wireformat::Chunk {
            index: u64::MAX - 1,
            count: u64::MAX,
            frame_size: u64::MAX,
        };
        let first = writer.chunk_headers(u64::MAX, chunk, Some(&buffer));
        let other = writer.chunk_headers(u64::MAX, chunk, None);
        assert_eq!(first.len, whole.len + CHUNK_HEADERS_MAX_LEN);
        assert!(other.len < first.len);
        for (written, caps) in [(&first, Some("image/jpeg")), (&other, None)] {
            let meta =
                wireformat::decode(written.headers.iter().map(|h| (h.key, h.value))).unwrap();
            assert_eq!(meta.chunk, Some(chunk));
            assert_eq!((meta.stream_id, meta.seq), (Some("cam-1"), Some(u64::MAX)));
            assert_eq!(meta.caps, caps);
            assert_eq!(meta.pts.is_some(), caps.is_some());
        }
    }

    #[test]
    fn caps_over_the_reader_limit_are_refused() {
        gst::init().unwrap();
        let mut writer = HeaderWriter::new("cam-1".into());
        let caps = gst::Caps::builder("video/x-h264")
            .field(
                "codec_data",
                gst::Buffer::from_mut_slice(vec![0u8; wireformat::MAX_TEXT_LEN / 2]),
            )
            .build();
        let len = caps.to_string().len();
        assert!(len > wireformat::MAX_TEXT_LEN);
        assert_eq!(writer.set_caps(&caps), Err(CapsTooLong(len)));
        assert_eq!(writer.caps, None);
    }
}

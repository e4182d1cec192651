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
#[derive(Debug)]
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

    pub fn headers(&self, seq: u64, buffer: &gst::BufferRef) -> RecordHeaders {
        let mut number = [0u8; 20];
        let mut headers = RecordHeaders {
            headers: OwnedHeaders::new_with_capacity(8),
            len: 0,
        }
        .insert(wireformat::VERSION_KEY, wireformat::VERSION.as_bytes())
        .insert(wireformat::STREAM_ID_KEY, self.stream_id.as_bytes())
        .insert(
            wireformat::SEQ_KEY,
            wireformat::encode_number(seq, &mut number),
        );
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

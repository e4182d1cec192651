// SPDX-License-Identifier: MPL-2.0

//! Where a buffer came from in Kafka, carried downstream as a custom meta
//! (`GstKafkaRecordMeta`, a structure any element or application can read):
//! kafkasrc adds it, mjpeghttpsink tells cameras apart by it.

/// The meta's registered name, also the name of its structure.
pub const NAME: &str = "GstKafkaRecordMeta";

/// The record a buffer was made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo<'a> {
    /// The record key, when it had one that is UTF-8.
    pub key: Option<&'a str>,
    /// The `gst-stream-id` header: the producing element.
    pub stream_id: Option<&'a str>,
    pub partition: i32,
    pub offset: i64,
    /// The record timestamp, ms since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

impl RecordInfo<'_> {
    /// What a camera is called: the key its producer was given. A record
    /// keyed by its own stream id (kafkasink without `key`) names no camera:
    /// that id is new at every start of the producer, and a wall of them
    /// would grow a dead tile per restart. `.` and `..` name none either,
    /// since browsers resolve them as path segments.
    pub fn camera(&self) -> Option<&str> {
        self.key
            .filter(|key| !matches!(*key, "" | "." | ".."))
            .filter(|key| Some(*key) != self.stream_id)
    }
}

pub fn register() {
    if !gst::meta::CustomMeta::is_registered(NAME) {
        gst::meta::CustomMeta::register(NAME, &[]);
    }
}

pub fn add(buffer: &mut gst::BufferRef, info: &RecordInfo) {
    let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, NAME) else {
        return;
    };
    let structure = meta.mut_structure();
    structure.set("partition", info.partition);
    structure.set("offset", info.offset);
    if let Some(key) = info.key {
        structure.set("key", key);
    }
    if let Some(stream_id) = info.stream_id {
        structure.set("stream-id", stream_id);
    }
    if let Some(timestamp_ms) = info.timestamp_ms {
        structure.set("timestamp-ms", timestamp_ms);
    }
}

/// Calls `f` with the record of `buffer`, if kafkasrc made it.
pub fn with<R>(buffer: &gst::BufferRef, f: impl FnOnce(&RecordInfo) -> R) -> Option<R> {
    let meta = gst::meta::CustomMeta::from_buffer(buffer, NAME).ok()?;
    let structure = meta.structure();
    let info = RecordInfo {
        key: structure.get("key").ok(),
        stream_id: structure.get("stream-id").ok(),
        partition: structure.get("partition").ok()?,
        offset: structure.get("offset").ok()?,
        timestamp_ms: structure.get("timestamp-ms").ok(),
    };
    Some(f(&info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_the_camera() {
        gst::init().unwrap();
        register();
        let mut buffer = gst::Buffer::new();
        assert_eq!(with(&buffer, |_| ()), None);
        let info = RecordInfo {
            key: Some("door"),
            stream_id: Some("kafkasink-1"),
            partition: 3,
            offset: 42,
            timestamp_ms: Some(1_700_000_000_000),
        };
        add(buffer.get_mut().unwrap(), &info);
        assert_eq!(with(&buffer, |got| got == &info), Some(true));
        assert_eq!(info.camera(), Some("door"));
        let named = |key: Option<&'static str>| RecordInfo {
            key,
            ..info.clone()
        };
        assert_eq!(named(None).camera(), None);
        assert_eq!(named(Some("")).camera(), None);
        assert_eq!(named(Some(".")).camera(), None);
        assert_eq!(named(Some("..")).camera(), None);
        assert_eq!(named(Some("a/../b")).camera(), Some("a/../b"));
        // kafkasink without `key` keys its records by its stream id.
        assert_eq!(named(Some("kafkasink-1")).camera(), None);
    }
}

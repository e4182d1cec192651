// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;

mod chunking;
mod delivery;
mod headers;
mod imp;
mod liveness;
mod produce;

glib::wrapper! {
    pub struct KafkaSink(ObjectSubclass<imp::KafkaSink>) @extends gst_base::BaseSink, gst::Element, gst::Object, @implements gst::URIHandler;
}

/// Which acknowledgement a record waits for (librdkafka `acks`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(i32)]
#[enum_type(name = "GstKafkaSinkAcks")]
pub enum Acks {
    #[enum_value(
        name = "None: the producer does not wait for the broker",
        nick = "none"
    )]
    None = 0,
    #[enum_value(
        name = "Leader: the partition leader wrote the record",
        nick = "leader"
    )]
    Leader = 1,
    #[enum_value(name = "All: every in-sync replica wrote the record", nick = "all")]
    All = -1,
}

/// Record batch compression (librdkafka `compression.codec`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSinkCompression")]
pub enum Compression {
    #[enum_value(name = "None (JPEG and H.264 do not compress further)", nick = "none")]
    None,
    #[enum_value(name = "gzip", nick = "gzip")]
    Gzip,
    #[enum_value(name = "Snappy", nick = "snappy")]
    Snappy,
    #[enum_value(name = "LZ4", nick = "lz4")]
    Lz4,
    #[enum_value(name = "Zstandard", nick = "zstd")]
    Zstd,
}

/// What to do when librdkafka's local queue is full.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSinkQueueFull")]
pub enum QueueFull {
    #[enum_value(name = "Block: wait for room (back-pressure upstream)", nick = "block")]
    Block,
    #[enum_value(name = "Drop: drop the buffer, warn and count it", nick = "drop")]
    Drop,
}

/// Whether upstream is live, which decides the automatic linger and whether
/// the stream runs ahead of the acknowledgements (docs/design.md, "Running
/// ahead").
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSinkUpstream")]
pub enum Upstream {
    #[enum_value(
        name = "Auto: ask every source upstream at start (a chain not linked yet counts as live)",
        nick = "auto"
    )]
    Auto,
    #[enum_value(
        name = "Live: queue frames in librdkafka while the brokers are away, 1 ms linger",
        nick = "live"
    )]
    Live,
    #[enum_value(
        name = "Not live: hold the stream back, at most 2 MB or five records ahead, 5 ms linger (20 in 500 kB batches)",
        nick = "not-live"
    )]
    NotLive,
}

/// What to do with a frame larger than the Kafka record limit.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSinkChunking")]
pub enum Chunking {
    #[enum_value(
        name = "Auto: cut it into chunk records that kafkasrc puts together again",
        nick = "auto"
    )]
    Auto,
    #[enum_value(name = "Off: refuse it with an error", nick = "off")]
    Off,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "kafkasink",
        gst::Rank::NONE,
        KafkaSink::static_type(),
    )
}

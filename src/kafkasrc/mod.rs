// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::kafka::ClientSettings;

mod engine;
mod group;
mod imp;
pub(crate) mod reassembly;

glib::wrapper! {
    pub struct KafkaSrc(ObjectSubclass<imp::KafkaSrc>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object, @implements gst::URIHandler;
}

/// What another element of this crate needs to read the records a kafkasrc
/// reads (mjpeghttpsink's replay), with the real client settings: the
/// `config` property reads back redacted.
#[derive(Debug, Clone)]
pub(crate) struct TopicSource {
    pub client: ClientSettings,
    pub topic: Option<String>,
    pub key: Option<String>,
    /// The one partition read, when the element reads only one.
    pub partition: Option<i32>,
    /// The element's negotiated output caps, else the caps it gives
    /// records that carry none.
    pub caps: gst::Caps,
}

impl KafkaSrc {
    pub(crate) fn topic_source(&self) -> TopicSource {
        self.imp().topic_source()
    }
}

/// Where consumption starts.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSrcStartFrom")]
pub enum StartFrom {
    #[enum_value(
        name = "Latest: only records produced from now on (a live view)",
        nick = "latest"
    )]
    Latest,
    #[enum_value(name = "Earliest: every record still in the topic", nick = "earliest")]
    Earliest,
    #[enum_value(
        name = "Committed: the consumer group's committed position (needs group-id)",
        nick = "committed"
    )]
    Committed,
    #[enum_value(
        name = "Timestamp: the first record at or after start-time",
        nick = "timestamp"
    )]
    Timestamp,
    #[enum_value(
        name = "Last: the newest record of each partition that a decoder can start at (for H.264/H.265 the newest keyframe), then every new one (what kafka:// URIs default to)",
        nick = "last"
    )]
    Last,
}

/// Where consumption ends with EOS.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSrcStopAt")]
pub enum StopAt {
    #[enum_value(name = "Never: keep waiting for records", nick = "never")]
    Never,
    #[enum_value(
        name = "End: EOS at the end of the topic as it was at start",
        nick = "end"
    )]
    End,
    #[enum_value(
        name = "Timestamp: EOS once every partition passed stop-time",
        nick = "timestamp"
    )]
    Timestamp,
}

/// How buffers are timestamped.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstKafkaSrcTimestampMode")]
pub enum TimestampMode {
    #[enum_value(
        name = "Live: running time on arrival, lowest display latency (live source)",
        nick = "live"
    )]
    Live,
    #[enum_value(
        name = "Original: the recorded PTS/DTS spacing, for replay at recorded speed and seeking (not live)",
        nick = "original"
    )]
    Original,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "kafkasrc",
        gst::Rank::NONE,
        KafkaSrc::static_type(),
    )
}

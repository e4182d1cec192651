// SPDX-License-Identifier: MPL-2.0

use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;

mod answers;
mod cameras;
mod conn;
mod imp;
mod metrics;
mod nosigpipe;
mod replay;
mod server;
mod signals;
mod stream;
mod tls;
mod transcode;

glib::wrapper! {
    pub struct MjpegHttpSink(ObjectSubclass<imp::MjpegHttpSink>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "mjpeghttpsink",
        gst::DebugColorFlags::empty(),
        Some("MJPEG over HTTP sink"),
    )
});

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "mjpeghttpsink",
        gst::Rank::NONE,
        MjpegHttpSink::static_type(),
    )
}

// SPDX-License-Identifier: MPL-2.0

use gst::glib;
use gst::prelude::*;

mod imp;
mod nosigpipe;
mod server;
mod stream;

glib::wrapper! {
    pub struct MjpegHttpSink(ObjectSubclass<imp::MjpegHttpSink>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "mjpeghttpsink",
        gst::Rank::NONE,
        MjpegHttpSink::static_type(),
    )
}

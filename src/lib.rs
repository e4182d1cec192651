// SPDX-License-Identifier: MPL-2.0
#![allow(clippy::non_send_fields_in_send_ty, unused_doc_comments)]

//! GStreamer elements that move video through Apache Kafka and serve it to
//! browsers: `kafkasink`, `kafkasrc` and `mjpeghttpsink`.
use gst::glib;

mod brokerwatch;
mod capturetime;
mod kafka;
mod kafkasink;
mod kafkasrc;
mod mjpeghttpsink;
mod recordmeta;
mod runtime;
mod throttle;
mod time;
mod uri;
pub mod wireformat;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    recordmeta::register();
    kafkasink::register(plugin)?;
    kafkasrc::register(plugin)?;
    mjpeghttpsink::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    kafka,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    // The project has no public home: GStreamer's own placeholder rather
    // than a made-up URL (an empty origin makes the plugin refuse to load).
    "Unknown package origin",
    env!("BUILD_REL_DATE")
);

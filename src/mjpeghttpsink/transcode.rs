// SPDX-License-Identifier: MPL-2.0

//! Replay of a stream that reaches the sink through a decoder and a JPEG
//! encoder (an H.264 topic: `kafkasrc ! h264parse ! openh264dec ! jpegenc
//! ! mjpeghttpsink`). A replay feeds the recorded records into a pipeline
//! of its own, `appsrc ! <copies of the elements between the kafkasrc and
//! the sink> ! appsink`, so that it shows what live viewers see: the same
//! decoder, the same JPEG settings.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gst::glib;
use gst::prelude::*;

use super::replay::FrameInfo;

/// Decoded pictures waiting in the appsink at most.
const MAX_PICTURES: u32 = 2;
/// Frames waiting in the appsrc at most before the replay's thread reads
/// more records: it reads only as fast as the decoder takes them.
pub const MAX_QUEUED: u64 = 2;

/// Whether replay can copy `element` into its own pipeline: it re-encodes
/// (a parser, decoder, encoder or converter), so live viewers see the
/// recorded picture, re-encoded. Overlays, crops and other effects are not
/// copied: what they draw depends on when they run.
pub fn reencodes(element: &gst::Element) -> bool {
    let single_in_out = element.sink_pads().len() == 1 && element.src_pads().len() == 1;
    single_in_out
        && ["Parser", "Decoder", "Encoder", "Converter"]
            .iter()
            .any(|kind| has_class(element, kind))
}

/// Whether `kind` is one of the parts of the element's factory class
/// ("Codec/Decoder/Video").
fn has_class(element: &gst::Element, kind: &str) -> bool {
    element.factory().is_some_and(|factory| {
        factory
            .metadata(gst::ELEMENT_METADATA_KLASS)
            .is_some_and(|klass| klass.split('/').any(|part| part == kind))
    })
}

/// A new element of `element`'s factory with the properties `element` has
/// away from their defaults.
fn copy_element(element: &gst::Element) -> Result<gst::Element, String> {
    let factory = element
        .factory()
        .ok_or_else(|| format!("{} has no factory", element.name()))?;
    let copy = factory
        .create()
        .build()
        .map_err(|err| format!("cannot make a {}: {err}", factory.name()))?;
    for pspec in element.list_properties() {
        let flags = pspec.flags();
        if !flags.contains(glib::ParamFlags::READWRITE)
            || flags.contains(glib::ParamFlags::CONSTRUCT_ONLY)
            || matches!(pspec.name(), "name" | "parent")
        {
            continue;
        }
        let value = element.property_value(pspec.name());
        let default = pspec.default_value();
        // Values GStreamer cannot compare (objects) are left out, and so are
        // values the spec would change (glib panics on those).
        if value.can_compare(default)
            && !gst::prelude::GstValueExt::eq(&value, default)
            && pspec.value_is_valid(&value)
        {
            copy.set_property_from_value(pspec.name(), &value);
        }
    }
    Ok(copy)
}

/// One replay's decoding pipeline.
pub struct Transcoder {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    appsink: gst_app::AppSink,
    /// The record timestamp of each record pushed, by the PTS it was given:
    /// a decoder gives each picture its own record's PTS, in presentation
    /// order.
    times: BTreeMap<gst::ClockTime, i64>,
    /// Whether PTS and DTS come from the records' headers (kafkasink's),
    /// decided by the first record; else the record timestamps are the PTS.
    header_times: Option<bool>,
    /// The PTS of pictures dropped as they leave the (last) decoder: the
    /// frames before the one asked, which GStreamer 1.22's decoders give
    /// out whatever their buffer flags say. Encoding them took two thirds
    /// of a seek's decoding.
    hidden: Arc<Mutex<BTreeSet<gst::ClockTime>>>,
}

impl Transcoder {
    /// `appsrc caps=<caps> ! <copies of chain> ! appsink`, playing.
    pub fn new(caps: &gst::Caps, chain: &[gst::Element]) -> Result<Transcoder, String> {
        let pipeline = gst::Pipeline::with_name("mjpeg-replay-transcoder");
        let appsrc = gst_app::AppSrc::builder()
            .caps(caps)
            .format(gst::Format::Time)
            .is_live(false)
            .build();
        let appsink = gst_app::AppSink::builder()
            .sync(false)
            .max_buffers(MAX_PICTURES)
            .enable_last_sample(false)
            .build();
        let mut elements = vec![appsrc.clone().upcast::<gst::Element>()];
        for element in chain {
            elements.push(copy_element(element)?);
        }
        let hidden: Arc<Mutex<BTreeSet<gst::ClockTime>>> = Arc::default();
        let decoded = elements
            .iter()
            .rev()
            .find(|element| has_class(element, "Decoder"))
            .and_then(|decoder| decoder.static_pad("src"));
        if let Some(pad) = decoded {
            let hidden = hidden.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let Some(pts) = info.buffer().and_then(|buffer| buffer.pts()) else {
                    return gst::PadProbeReturn::Ok;
                };
                // Pictures come in presentation order: hidden frames before
                // this one that gave none are forgotten.
                let mut hidden = hidden.lock().unwrap_or_else(|e| e.into_inner());
                *hidden = hidden.split_off(&pts);
                if hidden.remove(&pts) {
                    gst::PadProbeReturn::Drop
                } else {
                    gst::PadProbeReturn::Ok
                }
            });
        }
        elements.push(appsink.clone().upcast());
        pipeline
            .add_many(&elements)
            .map_err(|err| format!("cannot build the replay decoder: {err}"))?;
        gst::Element::link_many(&elements)
            .map_err(|err| format!("cannot link the replay decoder: {err}"))?;
        let transcoder = Transcoder {
            pipeline,
            appsrc,
            appsink,
            times: BTreeMap::new(),
            header_times: None,
            hidden,
        };
        if transcoder.pipeline.set_state(gst::State::Playing).is_err() {
            return Err(transcoder
                .error()
                .unwrap_or_else(|| "the replay decoder does not start".into()));
        }
        Ok(transcoder)
    }

    /// Feeds one frame to the decoder; a frame not `shown` is only decoded
    /// (a reference for the frames after it).
    pub fn push(&mut self, info: &FrameInfo, data: Vec<u8>, shown: bool) -> Result<(), String> {
        let header_times = *self.header_times.get_or_insert(info.pts.is_some());
        let (pts, dts) = if header_times {
            (info.pts, info.dts)
        } else {
            // A timestamp beyond GStreamer's clock range (a producer that
            // wrote microseconds) gives the frame no PTS, so no picture.
            let ms = u64::try_from(info.timestamp_ms).unwrap_or(0);
            (gst::ClockTime::MSECOND.checked_mul(ms), None)
        };
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let buffer = buffer.make_mut();
            buffer.set_pts(pts);
            buffer.set_dts(dts);
            buffer.set_flags(info.flags & gst::BufferFlags::DELTA_UNIT);
        }
        if let Some(pts) = pts {
            self.times.insert(pts, info.timestamp_ms);
            if !shown {
                self.hidden
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(pts);
            }
        }
        self.appsrc
            .push_buffer(buffer)
            .map(|_| ())
            .map_err(|err| format!("the replay decoder refused a frame: {err:?}"))
    }

    /// Records pushed and not yet taken by the decoder.
    pub fn queued(&self) -> u64 {
        self.appsrc.current_level_buffers()
    }

    /// No more records: the decoder gives out what it holds, then ends.
    pub fn finish(&self) {
        let _ = self.appsrc.end_of_stream();
    }

    /// Every picture was taken out after `finish`.
    pub fn is_done(&self) -> bool {
        self.appsink.is_eos()
    }

    /// The next picture and its record's timestamp, waiting for it at most
    /// `wait`. A picture whose PTS matches no record pushed is skipped.
    pub fn pull(&mut self, wait: Duration) -> Result<Option<(i64, Bytes)>, String> {
        if let Some(reason) = self.error() {
            return Err(reason);
        }
        let wait = gst::ClockTime::try_from(wait).unwrap_or(gst::ClockTime::ZERO);
        let Some(sample) = self.appsink.try_pull_sample(wait) else {
            return Ok(None);
        };
        let Some(buffer) = sample.buffer_owned() else {
            return Ok(None);
        };
        let Some(pts) = buffer.pts() else {
            return Ok(None);
        };
        // Records before this picture that gave none were dropped by the
        // decoder.
        self.times = self.times.split_off(&pts);
        let Some(timestamp) = self.times.remove(&pts) else {
            return Ok(None);
        };
        let jpeg = buffer
            .into_mapped_buffer_readable()
            .map_err(|_| "cannot read a decoded picture".to_string())?;
        Ok(Some((timestamp, Bytes::from_owner(jpeg))))
    }

    /// The first error the pipeline posted, naming the element.
    fn error(&self) -> Option<String> {
        let message = self
            .pipeline
            .bus()?
            .pop_filtered(&[gst::MessageType::Error])?;
        let gst::MessageView::Error(error) = message.view() else {
            return None;
        };
        let element = error
            .src()
            .map(|src| src.name().to_string())
            .unwrap_or_default();
        Some(format!("replay decoder: {element}: {}", error.error()))
    }
}

impl Drop for Transcoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(factory: &str) -> gst::Element {
        gst::init().unwrap();
        gst::ElementFactory::make(factory).build().unwrap()
    }

    #[test]
    fn parsers_decoders_encoders_and_converters_are_copied_effects_are_not() {
        for factory in [
            "h264parse",
            "openh264dec",
            "jpegdec",
            "videoconvert",
            "jpegenc",
        ] {
            assert!(reencodes(&element(factory)), "{factory}");
        }
        for factory in ["videoflip", "clockoverlay", "videobalance", "identity"] {
            assert!(!reencodes(&element(factory)), "{factory}");
        }
    }

    #[test]
    fn a_copy_has_the_settings_changed_from_the_defaults() {
        let live = element("jpegenc");
        live.set_property("quality", 40i32);
        let copy = copy_element(&live).unwrap();
        assert_eq!(copy.property::<i32>("quality"), 40);
        assert_ne!(copy.name(), live.name());
    }
}

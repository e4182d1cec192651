// SPDX-License-Identifier: MPL-2.0

//! Whether what feeds a pad is live, asked before anything flows
//! (kafkasink's start, when its producer's linger is chosen).
//!
//! A latency query cannot tell at that point: GStreamer's default handler
//! skips unlinked sink pads and answers "not live" for a chain whose source
//! is not linked yet (`rtspsrc ! rtpjpegdepay ! …`, a demuxer's pads), and
//! some sources fail it until they know their caps (`videotestsrc`). So this
//! walks upstream instead and asks each source itself.

use gst::prelude::*;
use gst_base::prelude::*;

/// Elements walked at most: a pipeline deeper than this is taken as live.
const MAX_ELEMENTS: usize = 256;

/// Whether `pad` may be fed by a live source: `false` only when every path
/// upstream is linked and ends at a `GstBaseSrc` that is not live. Anything
/// it cannot tell (an unlinked pad, a bin, a source that is not a
/// `GstBaseSrc`) counts as live, which keeps low-latency behaviour.
pub fn fed_live(pad: &gst::Pad) -> bool {
    let mut pending = vec![pad.clone()];
    let mut walked = 0;
    while let Some(pad) = pending.pop() {
        let Some(element) = pad.peer().and_then(|peer| peer.parent_element()) else {
            return true;
        };
        walked += 1;
        if walked > MAX_ELEMENTS || element.is::<gst::Bin>() {
            return true;
        }
        if let Some(source) = element.downcast_ref::<gst_base::BaseSrc>() {
            if source.is_live() {
                return true;
            }
            continue;
        }
        let sink_pads = element.sink_pads();
        if sink_pads.is_empty() {
            return true;
        }
        pending.extend(sink_pads);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the sink pad of the element named `sink` in `description`
    /// is fed live.
    fn fed_live_in(description: &str) -> bool {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(description)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let sink = pipeline.by_name("sink").unwrap();
        fed_live(&sink.static_pad("sink").unwrap())
    }

    #[test]
    fn linked_sources_that_are_not_live_make_a_stream_that_is_not_live() {
        assert!(!fed_live_in(
            "videotestsrc ! queue ! identity ! fakesink name=sink"
        ));
        assert!(!fed_live_in(
            "multifilesrc location=f-%05d.jpg ! queue ! fakesink name=sink"
        ));
        assert!(!fed_live_in(
            "compositor name=mix ! fakesink name=sink videotestsrc ! mix. videotestsrc ! mix."
        ));
    }

    #[test]
    fn any_live_source_makes_a_live_stream() {
        assert!(fed_live_in(
            "videotestsrc is-live=true ! queue ! fakesink name=sink"
        ));
        assert!(fed_live_in("appsrc is-live=true ! fakesink name=sink"));
        assert!(fed_live_in(
            "compositor name=mix ! fakesink name=sink videotestsrc ! mix. \
             videotestsrc is-live=true ! mix."
        ));
    }

    #[test]
    fn what_cannot_be_told_yet_counts_as_live() {
        // The depayloader's sink pad is linked once rtspsrc adds its pad.
        assert!(fed_live_in("rtpjpegdepay ! queue ! fakesink name=sink"));
        // decodebin's source pads come with the stream.
        assert!(fed_live_in(
            "videotestsrc ! decodebin ! queue ! fakesink name=sink"
        ));
        // A bin's inside is not walked, not even a filter's.
        assert!(fed_live_in(
            "videotestsrc ! bin.( queue ) ! fakesink name=sink"
        ));
        assert!(fed_live_in("bin.( videotestsrc ) ! fakesink name=sink"));
        assert!(fed_live_in("identity fakesink name=sink"));
    }
}

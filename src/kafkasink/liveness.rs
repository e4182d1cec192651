// SPDX-License-Identifier: MPL-2.0

//! Whether what feeds a pad is live, asked before anything flows
//! (kafkasink's start, when its producer's linger is chosen).
//!
//! A latency query cannot tell at that point: GStreamer's default handler
//! skips unlinked sink pads and answers "not live" for a chain whose source
//! is not linked yet (`rtspsrc ! rtpjpegdepay ! …`, a demuxer's pads), and
//! some sources fail it until they know their caps (`videotestsrc`). So this
//! walks upstream instead and asks each source itself.

use std::collections::HashSet;

use gst::prelude::*;
use gst_base::prelude::*;

/// Elements looked at most: a larger graph upstream is taken as live.
const MAX_ELEMENTS: usize = 256;

/// Whether `pad` may be fed by a live source: `false` only when every path
/// upstream is linked and ends at a `GstBaseSrc` that is not live. Anything
/// it cannot tell counts as live, which keeps low-latency behaviour: an
/// unlinked pad, a bin (its inside is not walked), a source that is not a
/// `GstBaseSrc`, and a `pad` inside a bin (its peer is a ghost pad's proxy,
/// whose parent is no element).
pub fn fed_live(pad: &gst::Pad) -> bool {
    let mut pending = vec![pad.clone()];
    let mut seen = HashSet::new();
    while let Some(pad) = pending.pop() {
        let Some(element) = pad.peer().and_then(|peer| peer.parent_element()) else {
            return true;
        };
        // A tee's branches meeting again in a mixer are looked at once.
        if !seen.insert(element.clone()) {
            continue;
        }
        if seen.len() > MAX_ELEMENTS || element.is::<gst::Bin>() {
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
        let (_pipeline, pad) = sink_pad(description);
        fed_live(&pad)
    }

    /// The pipeline of `description` (which must outlive the pad's links)
    /// and the sink pad of its element named `sink`.
    fn sink_pad(description: &str) -> (gst::Pipeline, gst::Pad) {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(description)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let sink = pipeline.by_name("sink").unwrap();
        let pad = sink.static_pad("sink").unwrap();
        (pipeline, pad)
    }

    /// As `fed_live_in`, for a sink that is linked: the answer is then not
    /// that of an unlinked pad.
    fn linked_and_fed_live_in(description: &str) -> bool {
        let (_pipeline, pad) = sink_pad(description);
        assert!(pad.peer().is_some(), "{description}: not linked");
        fed_live(&pad)
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
    fn a_tee_meeting_itself_again_is_looked_at_once() {
        // Without remembering what it saw, the walk would look at the tee
        // and the source once per branch, over MAX_ELEMENTS in all, and
        // count the stream as live.
        let branches: String = (0..100).map(|_| " t. ! queue ! mix.").collect();
        assert!(!fed_live_in(&format!(
            "videotestsrc ! tee name=t compositor name=mix ! fakesink name=sink{branches}"
        )));
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
        assert!(linked_and_fed_live_in(
            "videotestsrc ! bin.( queue ) ! fakesink name=sink"
        ));
        assert!(linked_and_fed_live_in(
            "bin.( videotestsrc ) ! fakesink name=sink"
        ));
        assert!(fed_live_in("identity fakesink name=sink"));
    }
}

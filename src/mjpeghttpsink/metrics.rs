// SPDX-License-Identifier: MPL-2.0

//! `/metrics`: the numbers of `/stats` in Prometheus' text exposition format
//! (version 0.0.4), one sample per stream labelled with its path.

use std::fmt::Write as _;

use super::server::ServerStats;
use super::stream::StreamStats;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: its name, type, help text and how to read a stream's
/// value from its statistics (`None`: no sample for that stream).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&StreamStats) -> Option<f64>,
}

const STREAM_FAMILIES: &[Family] = &[
    Family {
        name: "mjpeghttpsink_clients",
        kind: "gauge",
        help: "Clients receiving the stream now.",
        value: |s| Some(s.clients.len() as f64),
    },
    Family {
        name: "mjpeghttpsink_clients_opened_total",
        kind: "counter",
        help: "Clients that opened the stream since the sink started.",
        value: |s| Some(s.clients_total as f64),
    },
    Family {
        name: "mjpeghttpsink_frames_in_total",
        kind: "counter",
        help: "JPEG frames the sink received.",
        value: |s| Some(s.frames_in as f64),
    },
    Family {
        name: "mjpeghttpsink_not_jpeg_total",
        kind: "counter",
        help: "Buffers refused because they were not a JPEG.",
        value: |s| Some(s.not_jpeg as f64),
    },
    Family {
        name: "mjpeghttpsink_frames_sent_total",
        kind: "counter",
        help: "Frames sent, summed over every client.",
        value: |s| Some(s.frames_sent_total as f64),
    },
    Family {
        name: "mjpeghttpsink_frames_skipped_total",
        kind: "counter",
        help: "Frames a client missed because it was slower than the stream (latest frame wins).",
        value: |s| Some(s.frames_skipped_total as f64),
    },
    Family {
        name: "mjpeghttpsink_bytes_sent_total",
        kind: "counter",
        help: "JPEG bytes sent, summed over every client.",
        value: |s| Some(s.bytes_sent_total as f64),
    },
    Family {
        name: "mjpeghttpsink_input_fps",
        kind: "gauge",
        help: "Frames per second arriving at the sink (average over about 15 frames).",
        value: |s| Some(s.input_fps),
    },
    Family {
        name: "mjpeghttpsink_replay_clients",
        kind: "gauge",
        help: "Replay responses (?at=) open now.",
        value: |s| Some(s.replay.replay_clients as f64),
    },
    Family {
        name: "mjpeghttpsink_replay_clients_total",
        kind: "counter",
        help: "Replay responses (?at=) since the sink started.",
        value: |s| Some(s.replay.replay_clients_total as f64),
    },
    Family {
        name: "mjpeghttpsink_replay_refused_total",
        kind: "counter",
        help: "Replay requests answered 503 because max-replay-clients were open.",
        value: |s| Some(s.replay.replay_refused as f64),
    },
    Family {
        name: "mjpeghttpsink_last_frame_age_seconds",
        kind: "gauge",
        help: "Seconds since the last frame arrived (absent before the first).",
        value: |s| s.last_frame_age,
    },
];

/// The exposition of the server's connection counts and of `streams`.
pub fn render(server: &ServerStats, streams: &[StreamStats]) -> String {
    let mut text = String::new();
    describe(
        &mut text,
        "mjpeghttpsink_connections",
        "gauge",
        "TCP connections open now on this address.",
    );
    let _ = writeln!(text, "mjpeghttpsink_connections {}", server.connections);
    describe(
        &mut text,
        "mjpeghttpsink_connections_refused_total",
        "counter",
        "Connections closed at once because max-connections were open.",
    );
    let _ = writeln!(
        text,
        "mjpeghttpsink_connections_refused_total {}",
        server.connections_refused
    );
    for family in STREAM_FAMILIES {
        describe(&mut text, family.name, family.kind, family.help);
        for stream in streams {
            if let Some(value) = (family.value)(stream) {
                let _ = writeln!(
                    text,
                    "{}{{stream=\"{}\"}} {value}",
                    family.name,
                    escape_label(&stream.path)
                );
            }
        }
    }
    text
}

fn describe(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format wants it: backslash, double quote and
/// line feed escaped.
fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"/a"b\c"#), r#"/a\"b\\c"#);
        assert_eq!(escape_label("/x\ny"), "/x\\ny");
    }

    #[test]
    fn a_stream_without_frames_has_no_age_sample() {
        let stream = StreamStats {
            path: "/cam".into(),
            frames_in: 3,
            ..Default::default()
        };
        let text = render(&ServerStats::default(), &[stream]);
        assert!(text.contains("mjpeghttpsink_frames_in_total{stream=\"/cam\"} 3\n"));
        assert!(text.contains("# TYPE mjpeghttpsink_last_frame_age_seconds gauge\n"));
        assert!(!text.contains("mjpeghttpsink_last_frame_age_seconds{"));
    }
}

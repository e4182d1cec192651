// SPDX-License-Identifier: MPL-2.0

//! A topic of many cameras behind one `kafkasrc ! mjpeghttpsink`: each
//! camera at its own path from one consumer, and the wall page in headless
//! Chromium (Playwright against the system browser).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::http::*;
use common::*;
use gst::prelude::*;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// A key that needs escaping in a URL and in HTML, with a `/../` that a
/// browser would resolve unless the name stays one path segment.
const AWKWARD_KEY: &str = "gate \"2\" <b>&é/../x";

fn launch_pipeline(description: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// A camera publishing under `key` (None: kafkasink's default, records
/// keyed by its stream id): `frames` frames, or live without end.
fn camera(topic: &str, key: Option<&str>, pattern: &str, frames: Option<u32>) -> gst::Pipeline {
    let pipeline = launch_pipeline(&format!(
        "videotestsrc name=src pattern={pattern} ! \
         video/x-raw,width=320,height=180,framerate=10/1 ! timeoverlay ! jpegenc ! \
         kafkasink name=sink topic={topic} bootstrap-servers={}",
        bootstrap()
    ));
    let src = pipeline.by_name("src").unwrap();
    match frames {
        Some(frames) => src.set_property("num-buffers", frames as i32),
        None => src.set_property("is-live", true),
    }
    if let Some(key) = key {
        pipeline.by_name("sink").unwrap().set_property("key", key);
    }
    pipeline
}

/// Publishes `frames` frames under each key, one camera after the other.
fn publish(topic: &str, keys: &[Option<&str>], frames: u32) {
    let patterns = ["ball", "snow", "smpte", "pinwheel"];
    for (key, pattern) in keys.iter().zip(patterns.iter().cycle()) {
        let end = run(
            &camera(topic, *key, pattern, Some(frames)),
            Duration::from_secs(30),
        );
        assert!(matches!(end, End::Eos), "camera {key:?}");
    }
}

/// `kafkasrc ! mjpeghttpsink` from the start of `topic`, with extra
/// properties for each.
fn viewer(topic: &str, source: &str, sink: &str) -> (gst::Pipeline, u16) {
    let pipeline = launch_pipeline(&format!(
        "kafkasrc topic={topic} bootstrap-servers={} start-from=earliest {source} ! \
         mjpeghttpsink name=sink port=0 {sink}",
        bootstrap()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let port = pipeline
        .by_name("sink")
        .unwrap()
        .property::<u32>("bound-port") as u16;
    (pipeline, port)
}

fn camera_path(key: &str) -> String {
    format!("/video_feed/{}", utf8_percent_encode(key, NON_ALPHANUMERIC))
}

fn stats_json(port: u16) -> serde_json::Value {
    serde_json::from_str(&get(port, "/stats", "").body_string()).unwrap()
}

/// The cameras /stats lists, with the frames each took.
fn cameras(port: u16) -> Vec<(String, u64)> {
    let stats = stats_json(port);
    let mut cameras: Vec<(String, u64)> = stats["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| {
            Some((
                s["camera"].as_str()?.to_string(),
                s["frames_in"].as_u64().unwrap(),
            ))
        })
        .collect();
    cameras.sort();
    cameras
}

#[test]
fn one_consumer_serves_each_camera_of_a_topic_at_its_own_path() {
    let topic = unique_topic("wall");
    create_topic(&topic, 1, &[]);
    let keys = ["door", "yard", AWKWARD_KEY];
    publish(&topic, &keys.map(Some), 5);
    // A producer without a key: its stream id, new at each start, names no
    // camera; its frames are on the mixed stream only.
    publish(&topic, &[None], 2);
    let records = read_topic(&topic);
    assert_eq!(records.len(), 17);
    let last_of = |key: &str| {
        records
            .iter()
            .rfind(|r| r.key.as_deref() == Some(key.as_bytes()))
            .unwrap()
            .value
            .clone()
    };

    // The viewer reads the topic to its end, then EOS.
    let (pipeline, port) = viewer(&topic, "stop-at=end", "");
    let end = wait_end(&pipeline.bus().unwrap(), Duration::from_secs(30));
    assert!(matches!(end, End::Eos));
    let mut expected: Vec<(String, u64)> = keys.iter().map(|k| (k.to_string(), 5)).collect();
    expected.sort();
    assert_eq!(cameras(port), expected);
    let stats = stats_json(port);
    // The sink's own stream took every record: the one consumer read them all.
    let mixed = stats["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == "/video_feed")
        .unwrap();
    assert_eq!(mixed["frames_in"], 17);

    for key in keys {
        let path = camera_path(key);
        let snapshot = get(port, &format!("/snapshot.jpg?stream={path}"), "");
        assert_eq!(snapshot.status, 200, "{key}");
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut { snapshot.body }, &mut body).unwrap();
        assert_eq!(body, last_of(key), "{key}");
        // After EOS a viewer of the camera gets its last frame and the
        // closing boundary.
        let part = PartReader::open(get(port, &path, "")).next();
        assert_eq!(part.body, last_of(key), "{key}");
        assert!(part.last, "{key}");
    }
    // The mixed stream of a single-camera pipeline keeps working.
    assert_eq!(
        PartReader::open(get(port, "/video_feed", "")).next().body,
        records.last().unwrap().value
    );

    // The page is a wall of the three cameras, names escaped, the awkward
    // one a single path segment, without the mixed stream.
    let page = get(port, "/", "").body_string();
    assert_eq!(page.matches("<figure class=\"tile\"").count(), 3, "{page}");
    assert!(!page.contains("data-path=\"/video_feed\""), "{page}");
    assert!(
        page.contains(
            "<img src=\"/video_feed/gate%20%222%22%20%3Cb%3E%26%C3%A9%2F..%2Fx\" \
             alt=\"gate &quot;2&quot; &lt;b&gt;&amp;é/../x\">"
        ),
        "{page}"
    );
    // Stopping removes the cameras' streams with the sink's, so the server
    // stops and frees the port, a camera's viewer connected or not.
    let mut viewer_of_door = PartReader::open(get(port, &camera_path("door"), ""));
    viewer_of_door.next();
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(!listening(port));
}

#[test]
fn buffers_carry_the_record_they_were_made_of() {
    let topic = unique_topic("record-meta");
    create_topic(&topic, 1, &[]);
    publish(&topic, &[Some("door")], 3);
    let records = read_topic(&topic);
    let pipeline = launch_pipeline(&format!(
        "kafkasrc topic={topic} bootstrap-servers={} start-from=earliest stop-at=end ! \
         appsink name=sink sync=false",
        bootstrap()
    ));
    let sink = element::<gst_app::AppSink>(&pipeline, "sink");
    pipeline.set_state(gst::State::Playing).unwrap();
    for record in &records {
        let sample = sink
            .try_pull_sample(gst::ClockTime::from_seconds(20))
            .expect("a buffer");
        let buffer = sample.buffer().unwrap();
        let meta = gst::meta::CustomMeta::from_buffer(buffer, "GstKafkaRecordMeta").unwrap();
        let structure = meta.structure();
        assert_eq!(structure.get::<&str>("key").unwrap(), "door");
        assert_eq!(structure.get::<i32>("partition").unwrap(), record.partition);
        assert_eq!(structure.get::<i64>("offset").unwrap(), record.offset);
        assert_eq!(
            structure.get::<i64>("timestamp-ms").ok(),
            record.timestamp_ms
        );
        assert_eq!(
            structure.get::<&str>("stream-id").ok(),
            record.header("gst-stream-id")
        );
    }
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn cameras_beyond_max_cameras_stay_on_the_mixed_stream_with_a_warning() {
    let topic = unique_topic("wall-max");
    create_topic(&topic, 1, &[]);
    publish(&topic, &[Some("a"), Some("b"), Some("c")], 2);
    let (pipeline, port) = viewer(&topic, "", "max-cameras=2");
    let bus = pipeline.bus().unwrap();
    let warning = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Warning],
        )
        .expect("a warning");
    let gst::MessageView::Warning(warning) = warning.view() else {
        unreachable!()
    };
    assert!(
        warning
            .error()
            .to_string()
            .contains("camera \"c\" not served at a path of its own: max-cameras (2) reached"),
        "{}",
        warning.error()
    );
    assert_eq!(cameras(port), [("a".to_string(), 2), ("b".to_string(), 2)]);
    assert_eq!(get(port, "/video_feed/c", "").status, 404);
    pipeline.set_state(gst::State::Null).unwrap();
}

/// The wall page driven by tests/browser/wall.py in headless Chromium.
#[test]
fn the_wall_shows_every_camera_moving_and_cameras_that_appear_or_stop() {
    let topic = unique_topic("wall-browser");
    create_topic(&topic, 1, &[]);
    let first = camera(&topic, Some("door"), "ball", None);
    let second = camera(&topic, Some("yard"), "snow", None);
    for camera in [&first, &second] {
        camera.set_state(gst::State::Playing).unwrap();
    }
    let (viewer, port) = viewer(&topic, "", "");
    assert!(wait_until(Duration::from_secs(20), || cameras(port).len() == 2));

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/wall.py");
    let mut browser = Command::new(python())
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg(AWKWARD_KEY)
        .stdout(Stdio::piped())
        .spawn()
        .expect("run tests/browser/wall.py");
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut next_line = || lines.next().expect("wall.py ended").unwrap();

    // Two tiles, both moving.
    assert_eq!(next_line(), "moving door,yard");
    // A camera appears: its tile comes without reloading the page.
    let third = camera(&topic, Some(AWKWARD_KEY), "smpte", None);
    third.set_state(gst::State::Playing).unwrap();
    assert_eq!(next_line(), format!("appeared {AWKWARD_KEY}"));
    // A camera stops: its tile says so.
    first.set_state(gst::State::Null).unwrap();
    assert_eq!(next_line(), "stale door");
    assert!(browser.wait().unwrap().success());
    for pipeline in [&second, &third, &viewer] {
        pipeline.set_state(gst::State::Null).unwrap();
    }
}

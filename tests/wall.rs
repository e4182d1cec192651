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

/// A key that needs escaping in a URL and in HTML.
const AWKWARD_KEY: &str = "gate \"2\" <b>&é/x";

fn launch_pipeline(description: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// A camera publishing under `key`: `frames` frames, or live without end.
fn camera(topic: &str, key: &str, pattern: &str, frames: Option<u32>) -> gst::Pipeline {
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
    pipeline.by_name("sink").unwrap().set_property("key", key);
    pipeline
}

fn viewer(topic: &str, properties: &str) -> (gst::Pipeline, u16) {
    let pipeline = launch_pipeline(&format!(
        "kafkasrc topic={topic} bootstrap-servers={} start-from=earliest ! \
         mjpeghttpsink name=sink port=0 {properties}",
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
    for (key, pattern) in keys.iter().zip(["ball", "snow", "smpte"]) {
        let end = run(
            &camera(&topic, key, pattern, Some(5)),
            Duration::from_secs(30),
        );
        assert!(matches!(end, End::Eos), "camera {key}");
    }
    let records = read_topic(&topic);
    assert_eq!(records.len(), 15);
    let last_of = |key: &str| {
        records
            .iter()
            .rfind(|r| r.key.as_deref() == Some(key.as_bytes()))
            .unwrap()
            .value
            .clone()
    };

    let (pipeline, port) = viewer(&topic, "");
    let mut expected: Vec<(String, u64)> = keys.iter().map(|k| (k.to_string(), 5)).collect();
    expected.sort();
    assert!(
        wait_until(Duration::from_secs(20), || cameras(port) == expected),
        "{:?}",
        cameras(port)
    );
    let stats = stats_json(port);
    // The sink's own stream took every record: the one consumer read them all.
    let mixed = stats["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == "/video_feed")
        .unwrap();
    assert_eq!(mixed["frames_in"], 15);

    for key in keys {
        let path = camera_path(key);
        let snapshot = get(port, &format!("/snapshot.jpg?stream={path}"), "");
        assert_eq!(snapshot.status, 200, "{key}");
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut { snapshot.body }, &mut body).unwrap();
        assert_eq!(body, last_of(key), "{key}");
        // A viewer of the camera gets its newest frame at once.
        let mut feed = PartReader::open(get(port, &path, ""));
        assert_eq!(feed.next().body, last_of(key), "{key}");
    }
    // The mixed stream of a single-camera pipeline keeps working.
    assert_eq!(
        PartReader::open(get(port, "/video_feed", "")).next().body,
        records.last().unwrap().value
    );

    // The page is a wall of the three cameras, names escaped, without the
    // mixed stream.
    let page = get(port, "/", "").body_string();
    assert_eq!(page.matches("<figure class=\"tile\"").count(), 3, "{page}");
    assert!(!page.contains("data-path=\"/video_feed\""), "{page}");
    assert!(
        page.contains(
            "<img src=\"/video_feed/gate%20%222%22%20%3Cb%3E%26%C3%A9/x\" \
             alt=\"gate &quot;2&quot; &lt;b&gt;&amp;é/x\">"
        ),
        "{page}"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn cameras_beyond_max_cameras_stay_on_the_mixed_stream_with_a_warning() {
    let topic = unique_topic("wall-max");
    create_topic(&topic, 1, &[]);
    for key in ["a", "b", "c"] {
        let end = run(
            &camera(&topic, key, "ball", Some(2)),
            Duration::from_secs(30),
        );
        assert!(matches!(end, End::Eos), "camera {key}");
    }
    let (pipeline, port) = viewer(&topic, "max-cameras=2");
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
    let first = camera(&topic, "door", "ball", None);
    let second = camera(&topic, "yard", "snow", None);
    for camera in [&first, &second] {
        camera.set_state(gst::State::Playing).unwrap();
    }
    let (viewer, port) = viewer(&topic, "");
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
    let third = camera(&topic, AWKWARD_KEY, "smpte", None);
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

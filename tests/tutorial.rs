// SPDX-License-Identifier: MPL-2.0

//! The tutorial's own scripts (tests/interop/producer.py and consumer.py,
//! unchanged but for the camera address) in the tutorial's order: the
//! consumer side first, on a topic that does not exist yet, then the
//! producer, against a stock broker on localhost:9092 (`scripts/kafka.sh
//! start`: topics are created on first use) and the test camera at
//! rtsp://127.0.0.1:8554/test. The ports are the tutorial's, so the two
//! tests run one after the other, each with a broker of its own.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::http::{PartReader, get};
use common::*;
use gst::prelude::*;

const BROKER_PORT: u16 = 9092;
const CAMERA_PORT: u16 = 8554;
/// Flask's default port, where consumer.py serves.
const FLASK_PORT: u16 = 5000;
const TOPIC: &str = "rtsp-stream";
const TIMEOUT: Duration = Duration::from_secs(60);

static TUTORIAL_PORTS: Mutex<()> = Mutex::new(());

fn start_camera() -> Process {
    let camera = Process(
        Command::new(test_camera_binary())
            .args(["--port", &CAMERA_PORT.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(TIMEOUT, || listening(CAMERA_PORT)),
        "the test camera does not listen on {CAMERA_PORT}"
    );
    camera
}

/// Whether something accepts connections on 127.0.0.1:`port` (a fixed
/// port outside the ephemeral range, so a connect cannot reach itself).
fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A tutorial script, in a process group of its own (Flask's reloader
/// forks), with its output kept for the failure message.
fn start_script(name: &str, log: &std::path::Path) -> Process {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name);
    let output = std::fs::File::create(log).unwrap();
    Process(
        Command::new(python())
            .arg(script)
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .process_group(0)
            .spawn()
            .unwrap(),
    )
}

fn exited(process: &mut Process, log: &std::path::Path) -> Option<String> {
    process.0.try_wait().unwrap().map(|status| {
        format!(
            "{status}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })
}

/// The records in the tutorial's topic now.
fn topic_records() -> Vec<Record> {
    read_topic_at(&format!("127.0.0.1:{BROKER_PORT}"), TOPIC)
}

/// A stock broker on the tutorial's port, stopped when dropped (also when
/// a test fails), so that the next test can start its own.
struct StockBroker(OwnBroker);

impl StockBroker {
    fn start() -> StockBroker {
        StockBroker(OwnBroker::stock_at(BROKER_PORT))
    }
}

impl Drop for StockBroker {
    fn drop(&mut self) {
        self.0.stop();
        let _ = std::fs::remove_dir_all(&self.0.home);
    }
}

/// Reads `count` parts of the tutorial app's stream: parts start with
/// `marker` and end with "\r\n\r\n", as the tutorial's format has no
/// Content-Length.
fn read_parts(body: &mut dyn Read, marker: &[u8], count: usize) -> Vec<Vec<u8>> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let starts: Vec<usize> = data
            .windows(marker.len())
            .enumerate()
            .filter(|(_, window)| *window == marker)
            .map(|(i, _)| i)
            .collect();
        if starts.len() > count {
            return starts
                .windows(2)
                .take(count)
                .map(|pair| {
                    let part = &data[pair[0] + marker.len()..pair[1]];
                    part.strip_suffix(b"\r\n\r\n").unwrap_or(part).to_vec()
                })
                .collect();
        }
        let n = body.read(&mut chunk).expect("the stream goes on");
        assert!(n > 0, "the stream ended after {} bytes", data.len());
        data.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn viewer_first_then_the_tutorial_producer() {
    let _ports = TUTORIAL_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let _broker = StockBroker::start();
    let _camera = start_camera();

    // The viewer, started on a topic nobody has created yet.
    let viewer = launch(&format!(
        "kafkasrc name=src topic={TOPIC} bootstrap-servers=localhost:{BROKER_PORT} \
         ! mjpeghttpsink name=http port=0"
    ));
    viewer.set_state(gst::State::Playing).unwrap();
    let src = viewer.by_name("src").unwrap();
    assert!(wait_until(TIMEOUT, || src
        .property::<gst::Structure>("stats")
        .get::<bool>("waiting-for-topic")
        .unwrap()));
    let port = viewer
        .by_name("http")
        .unwrap()
        .property::<u32>("bound-port") as u16;

    let log = std::env::temp_dir().join(format!("tutorial-producer-{}.log", std::process::id()));
    let mut producer = start_script("producer.py", &log);
    assert!(
        wait_until(TIMEOUT, || get(port, "/snapshot.jpg", "").status == 200
            || producer.0.try_wait().unwrap().is_some()),
        "no frame reached the viewer"
    );
    if let Some(exit) = exited(&mut producer, &log) {
        panic!("producer.py exited: {exit}");
    }
    let mut stream = PartReader::open(get(port, "/video_feed", ""));
    let parts: Vec<Vec<u8>> = (0..3).map(|_| stream.next().body).collect();
    if let Some(exit) = exited(&mut producer, &log) {
        panic!("producer.py exited: {exit}");
    }
    let records = topic_records();
    assert!(!records.is_empty());
    for part in &parts {
        // Each picture served is a record producer.py wrote, byte for byte:
        // a bare JPEG value, no key, no headers.
        let record = records
            .iter()
            .find(|r| &r.value == part)
            .unwrap_or_else(|| panic!("a served frame of {} bytes is no record", part.len()));
        assert!(record.headers.is_empty() && record.key.is_none());
        assert!(part.starts_with(&[0xff, 0xd8]) && part.ends_with(&[0xff, 0xd9]));
    }
    assert!(
        !src.property::<gst::Structure>("stats")
            .get::<bool>("waiting-for-topic")
            .unwrap()
    );
    viewer.set_state(gst::State::Null).unwrap();
    drop(producer);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn tutorial_consumer_first_then_kafkasink() {
    let _ports = TUTORIAL_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let _broker = StockBroker::start();
    let _camera = start_camera();
    assert!(!listening(FLASK_PORT), "port {FLASK_PORT} is taken");

    let log = std::env::temp_dir().join(format!("tutorial-consumer-{}.log", std::process::id()));
    let mut consumer = start_script("consumer.py", &log);
    assert!(wait_until(TIMEOUT, || listening(FLASK_PORT)
        || consumer.0.try_wait().unwrap().is_some()),);
    if let Some(exit) = exited(&mut consumer, &log) {
        panic!("consumer.py exited: {exit}");
    }

    // Then our producer, into the topic as the tutorial names it (the
    // tutorial's consumer looks the topic up only once a browser asks).
    let producer = launch(&format!(
        "rtspsrc location=rtsp://127.0.0.1:{CAMERA_PORT}/test latency=0 ! rtpjpegdepay ! jpegparse \
         ! kafkasink topic={TOPIC} bootstrap-servers=localhost:{BROKER_PORT} create-topic=true"
    ));
    producer.set_state(gst::State::Playing).unwrap();

    // Flask's server sends the stream chunked; the helper decodes that.
    let mut response = get(FLASK_PORT, "/video_feed", "");
    assert_eq!(response.status, 200);
    let parts = read_parts(
        &mut response.body,
        b"--frame\r\nContent-Type: image/jpg\r\n\r\n",
        3,
    );
    let records = topic_records();
    for part in &parts {
        // Each picture the tutorial's app serves is a frame kafkasink wrote.
        let record = records
            .iter()
            .find(|r| &r.value == part)
            .unwrap_or_else(|| panic!("a served frame of {} bytes is no record", part.len()));
        assert!(record.header("gst-seq").is_some(), "{:?}", record.headers);
        assert!(part.starts_with(&[0xff, 0xd8]) && part.ends_with(&[0xff, 0xd9]));
    }
    producer.set_state(gst::State::Null).unwrap();
    drop(consumer);
    let _ = std::fs::remove_file(&log);
}

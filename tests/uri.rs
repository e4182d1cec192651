// SPDX-License-Identifier: MPL-2.0

//! `kafka://` URIs: playbin, uridecodebin and gst-discoverer-1.0 on topics
//! of a real broker, URI parsing through the elements, secrets.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use gst::glib;
use gst::prelude::*;

const FRAMES: usize = 30;

/// FNV-1a: a checksum of a decoded picture.
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What an appsink received: per buffer its checksum, PTS, offset and flags.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    checksum: u64,
    pts: Option<gst::ClockTime>,
    offset: u64,
    flags: gst::BufferFlags,
}

type Frames = Arc<Mutex<Vec<Frame>>>;

fn collecting_appsink(caps: Option<&str>, sync: bool) -> (gst_app::AppSink, Frames) {
    let appsink = gst_app::AppSink::builder().sync(sync).build();
    if let Some(caps) = caps {
        appsink.set_caps(Some(&caps.parse::<gst::Caps>().unwrap()));
    }
    let frames = collect(&appsink);
    (appsink, frames)
}

/// Collects what the appsink called `name` in `pipeline` receives.
fn collect_named(pipeline: &gst::Pipeline, name: &str) -> Frames {
    let appsink = pipeline.by_name(name).unwrap();
    collect(appsink.downcast_ref::<gst_app::AppSink>().unwrap())
}

fn collect(appsink: &gst_app::AppSink) -> Frames {
    let frames = Frames::default();
    let collected = frames.clone();
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                collected.lock().unwrap().push(Frame {
                    checksum: checksum(&map),
                    pts: buffer.pts(),
                    offset: buffer.offset(),
                    flags: buffer.flags(),
                });
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    frames
}

fn checksums(frames: &Frames) -> Vec<u64> {
    frames.lock().unwrap().iter().map(|f| f.checksum).collect()
}

#[derive(Clone, Copy)]
enum Codec {
    Jpeg,
    H264,
}

impl Codec {
    fn encoder(self) -> &'static str {
        match self {
            Codec::Jpeg => "jpegenc",
            Codec::H264 => "openh264enc gop-size=10 ! h264parse",
        }
    }

    fn decoder(self) -> &'static str {
        match self {
            Codec::Jpeg => "jpegdec",
            Codec::H264 => "h264parse ! openh264dec",
        }
    }
}

/// Writes `frames` pictures of `width`x`height` (a moving ball: every
/// picture differs) to `topic` through kafkasink; returns the checksums of
/// the encoded frames decoded directly by the same decoder a player plugs.
fn produce(topic: &str, codec: Codec, frames: usize, width: u32, height: u32) -> Vec<u64> {
    let pipeline = launch(&format!(
        "videotestsrc num-buffers={frames} pattern=ball \
         ! video/x-raw,format=I420,width={width},height={height},framerate=30/1 \
         ! {} ! tee name=t \
         t. ! queue ! kafkasink topic={topic} bootstrap-servers={} \
         t. ! queue ! {} ! video/x-raw,format=I420 ! appsink name=reference sync=false",
        codec.encoder(),
        bootstrap(),
        codec.decoder(),
    ));
    let reference = collect_named(&pipeline, "reference");
    if let End::Error(err, debug) = run(&pipeline, Duration::from_secs(60)) {
        panic!("producing to {topic}: {err} ({debug:?})");
    }
    let sums = checksums(&reference);
    assert_eq!(sums.len(), frames, "frames decoded directly");
    sums
}

fn new_topic(name: &str) -> String {
    let topic = unique_topic(name);
    create_topic(&topic, 1, &[]);
    topic
}

/// playbin with an appsink as video sink, as gst-play-1.0 runs it.
fn play(uri: &str) -> Vec<Frame> {
    init();
    let (appsink, frames) = collecting_appsink(Some("video/x-raw,format=I420"), true);
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", uri)
        .property("video-sink", &appsink)
        .build()
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    match run(&playbin, Duration::from_secs(60)) {
        End::Eos => (),
        End::Error(err, debug) => panic!("playbin {uri}: {err} ({debug:?})"),
    }
    frames.lock().unwrap().clone()
}

fn assert_recorded_pace(frames: &[Frame]) {
    let pts: Vec<_> = frames.iter().map(|f| f.pts.unwrap()).collect();
    for (i, pts) in pts.iter().enumerate() {
        let expected = gst::ClockTime::SECOND.mul_div_floor(i as u64, 30).unwrap();
        assert!(
            pts.nseconds().abs_diff(expected.nseconds()) <= 1_000_000,
            "frame {i}: PTS {pts}, expected {expected}"
        );
    }
}

fn playbin_plays(codec: Codec, name: &str) {
    let topic = new_topic(name);
    let sent = produce(&topic, codec, FRAMES, 320, 240);
    let frames = play(&format!(
        "kafka://{}/{topic}?start-from=earliest&stop-at=end&timestamp-mode=original",
        bootstrap()
    ));
    assert_eq!(frames.len(), FRAMES);
    let decoded: Vec<u64> = frames.iter().map(|f| f.checksum).collect();
    assert_eq!(decoded, sent, "pictures decoded by playbin");
    assert_recorded_pace(&frames);
}

#[test]
fn playbin_plays_a_jpeg_topic() {
    playbin_plays(Codec::Jpeg, "uri-play-jpeg");
}

#[test]
fn playbin_plays_an_h264_topic() {
    playbin_plays(Codec::H264, "uri-play-h264");
}

#[test]
fn uridecodebin_decodes_a_topic() {
    let topic = new_topic("uri-decodebin");
    let sent = produce(&topic, Codec::H264, FRAMES, 320, 240);
    let pipeline = launch(&format!(
        "uridecodebin uri=\"kafka://{}/{topic}?start-from=earliest&stop-at=end\" \
         ! video/x-raw,format=I420 ! appsink name=out sync=false",
        bootstrap()
    ));
    let frames = collect_named(&pipeline, "out");
    assert!(matches!(run(&pipeline, Duration::from_secs(60)), End::Eos));
    assert_eq!(checksums(&frames), sent);
}

/// gst-discoverer-1.0 -v on `uri`: its output.
fn discover(uri: &str) -> String {
    let output = std::process::Command::new("gst-discoverer-1.0")
        .args(["-v", "-t", "20", uri])
        .env("GST_PLUGIN_PATH", plugin_dir())
        .output()
        .expect("run gst-discoverer-1.0");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}");
    stdout
}

#[test]
fn discoverer_reports_the_caps_of_the_newest_jpeg_record() {
    init();
    let topic = new_topic("uri-discover-jpeg");
    produce(&topic, Codec::Jpeg, 10, 320, 240);
    produce(&topic, Codec::Jpeg, 5, 160, 120);
    let report = discover(&format!("kafka://{}/{topic}", bootstrap()));
    assert!(
        report.contains("video #0: image/jpeg")
            && report.contains("width=(int)160, height=(int)120"),
        "{report}"
    );
    assert!(!report.contains("width=(int)320"), "{report}");
    assert!(!report.contains("timed out"), "{report}");
}

#[test]
fn discoverer_reports_the_caps_of_the_newest_h264_keyframe() {
    init();
    let topic = new_topic("uri-discover-h264");
    produce(&topic, Codec::H264, 20, 320, 240);
    // Keyframes at offsets 20 and 30; the newest record (31) is a delta unit.
    produce(&topic, Codec::H264, 12, 176, 144);
    let report = discover(&format!("kafka://{}/{topic}", bootstrap()));
    assert!(report.contains("video #0: video/x-h264"), "{report}");
    assert!(
        report.contains("Width: 176") && report.contains("Height: 144"),
        "{report}"
    );
}

/// Plays `uri` through the source gst_element_make_from_uri() makes for it,
/// into an appsink; the frames and the source.
fn pull_from_uri(uri: &str) -> (Vec<Frame>, gst::Element) {
    init();
    let src = gst::Element::make_from_uri(gst::URIType::Src, uri, None).unwrap();
    let (appsink, frames) = collecting_appsink(None, false);
    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many([&src, appsink.upcast_ref::<gst::Element>()])
        .unwrap();
    src.link(&appsink).unwrap();
    match run(&pipeline, Duration::from_secs(60)) {
        End::Eos => (),
        End::Error(err, debug) => panic!("{uri}: {err} ({debug:?})"),
    }
    let frames = frames.lock().unwrap().clone();
    (frames, src)
}

#[test]
fn a_uri_starts_at_the_newest_keyframe() {
    let topic = new_topic("uri-last-h264");
    // Keyframes at offsets 0, 10 and 20.
    produce(&topic, Codec::H264, 25, 320, 240);
    let (frames, _) = pull_from_uri(&format!("kafka://{}/{topic}?stop-at=end", bootstrap()));
    let offsets: Vec<u64> = frames.iter().map(|f| f.offset).collect();
    assert_eq!(offsets, (20..25).collect::<Vec<u64>>());
    assert!(!frames[0].flags.contains(gst::BufferFlags::DELTA_UNIT));

    let topic = new_topic("uri-last-jpeg");
    produce(&topic, Codec::Jpeg, 5, 320, 240);
    let (frames, _) = pull_from_uri(&format!("kafka://{}/{topic}?stop-at=end", bootstrap()));
    let offsets: Vec<u64> = frames.iter().map(|f| f.offset).collect();
    assert_eq!(offsets, vec![4]);
}

#[test]
fn several_brokers_and_a_percent_encoded_topic() {
    let topic = new_topic("uri-brokers");
    produce(&topic, Codec::Jpeg, 5, 320, 240);
    // Nothing listens on the first broker: the client goes on to the next.
    let dead = format!("127.0.0.1:{}", free_port());
    let encoded = topic.replace('-', "%2D").replacen('u', "%75", 1);
    let (frames, src) = pull_from_uri(&format!(
        "kafka://{dead},{}/{encoded}?start-from=earliest&stop-at=end&connect-timeout-ms=5000",
        bootstrap()
    ));
    assert_eq!(frames.len(), 5);
    assert_eq!(src.property::<String>("topic"), topic);
    assert_eq!(
        src.property::<String>("bootstrap-servers"),
        format!("{dead},{}", bootstrap())
    );
}

#[test]
fn kafkasink_writes_to_a_uri() {
    let topic = new_topic("uri-sink");
    let pipeline = launch("videotestsrc num-buffers=5 ! jpegenc name=enc");
    let sink = gst::Element::make_from_uri(
        gst::URIType::Sink,
        &format!("kafka://{}/{topic}?key=door&compression=lz4", bootstrap()),
        None,
    )
    .unwrap();
    assert_eq!(sink.factory().unwrap().name(), "kafkasink");
    pipeline.add(&sink).unwrap();
    pipeline.by_name("enc").unwrap().link(&sink).unwrap();
    assert!(matches!(run(&pipeline, Duration::from_secs(60)), End::Eos));
    let records = read_topic(&topic);
    assert_eq!(records.len(), 5);
    assert!(
        records
            .iter()
            .all(|r| r.key.as_deref() == Some(&b"door"[..]))
    );
}

fn nick(element: &gst::Element, name: &str) -> String {
    let value = element.property_value(name);
    glib::EnumValue::from_value(&value)
        .unwrap()
        .1
        .nick()
        .to_string()
}

fn uri_handler(factory: &str) -> gst::Element {
    init();
    gst::ElementFactory::make(factory).build().unwrap()
}

fn set_uri(element: &gst::Element, uri: &str) -> Result<(), glib::Error> {
    element
        .dynamic_cast_ref::<gst::URIHandler>()
        .unwrap()
        .set_uri(uri)
}

fn get_uri(element: &gst::Element) -> Option<String> {
    element
        .dynamic_cast_ref::<gst::URIHandler>()
        .unwrap()
        .uri()
        .map(Into::into)
}

#[test]
fn uri_lookup_finds_both_elements() {
    init();
    for (kind, factory) in [
        (gst::URIType::Src, "kafkasrc"),
        (gst::URIType::Sink, "kafkasink"),
    ] {
        let element = gst::Element::make_from_uri(kind, "kafka://127.0.0.1:9092/cam1", None)
            .unwrap_or_else(|err| panic!("{factory}: {err}"));
        assert_eq!(element.factory().unwrap().name(), factory);
        assert_eq!(element.property::<String>("topic"), "cam1");
    }
}

#[test]
fn a_bad_property_or_value_is_rejected_and_changes_nothing() {
    for factory in ["kafkasrc", "kafkasink"] {
        let element = uri_handler(factory);
        for (query, expected) in [
            (
                "no-such-thing=1",
                format!("{factory} has no property no-such-thing"),
            ),
            (
                "connect-timeout-ms=soon",
                "\"soon\" is not a valid value of property connect-timeout-ms".into(),
            ),
            // Below the property's minimum of 100.
            (
                "connect-timeout-ms=5",
                "\"5\" is not a valid value of property connect-timeout-ms".into(),
            ),
            (
                "stats=x",
                format!("property stats of {factory} cannot be set"),
            ),
            ("topic=other", "topic cannot be a query parameter".into()),
        ] {
            let uri = format!("kafka://127.0.0.1:9092/changed?client-id=changed&{query}");
            let err = set_uri(&element, &uri).unwrap_err();
            assert!(err.matches(gst::URIError::BadUri), "{err}");
            assert!(err.message().contains(&expected), "{query}: {err}");
            assert_eq!(element.property::<Option<String>>("topic"), None);
            assert_eq!(element.property::<Option<String>>("client-id"), None);
            // Through gst_element_make_from_uri() the reason reaches the caller.
            let kind = if factory == "kafkasrc" {
                gst::URIType::Src
            } else {
                gst::URIType::Sink
            };
            let err = gst::Element::make_from_uri(kind, &uri, None).unwrap_err();
            assert!(err.message().contains(&expected), "{query}: {err}");
        }
    }
    let src = uri_handler("kafkasrc");
    let err = set_uri(&src, "kafka://127.0.0.1:9092/t?start-from=sometimes").unwrap_err();
    assert!(
        err.message()
            .contains("\"sometimes\" is not a valid value of property start-from"),
        "{err}"
    );
    // playbin posts the reason as its error.
    let playbin = gst::ElementFactory::make("playbin")
        .property("uri", "kafka://127.0.0.1:9092/t?start-form=earliest")
        .build()
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let message = expect_error(run(&playbin, Duration::from_secs(10)));
    assert!(
        message.contains("kafkasrc has no property start-form"),
        "{message}"
    );
    // The uri property: a bad URI leaves every setting as it was.
    src.set_property("uri", "kafka://127.0.0.1:9092/t?max-lag-ms=abc");
    assert_eq!(src.property::<Option<String>>("topic"), None);
}

#[test]
fn a_secret_in_the_query_is_accepted_and_never_read_back() {
    let config = "config, client.rack=rack1, sasl.username=alice, sasl.password=hunter2";
    let encoded: String = config
        .bytes()
        .map(|b| match b {
            b' ' => "%20".to_string(),
            b'=' => "%3D".to_string(),
            b',' => "%2C".to_string(),
            b => (b as char).to_string(),
        })
        .collect();
    for factory in ["kafkasrc", "kafkasink"] {
        let element = uri_handler(factory);
        set_uri(
            &element,
            &format!("kafka://127.0.0.1:9092/cam1?config={encoded}&client-id=viewer"),
        )
        .unwrap();
        let shown = element.property::<gst::Structure>("config");
        assert_eq!(shown.get::<String>("sasl.password").unwrap(), "***");
        assert_eq!(shown.get::<String>("sasl.username").unwrap(), "alice");
        for uri in [
            get_uri(&element).unwrap(),
            element.property::<String>("uri"),
        ] {
            assert!(
                !uri.contains("hunter2") && !uri.contains("password"),
                "{uri}"
            );
            assert!(!uri.contains("***") && !uri.contains("%2A%2A%2A"), "{uri}");
            assert!(
                uri.contains("sasl.username") && uri.contains("client-id=viewer"),
                "{uri}"
            );
        }
    }
}

#[test]
fn the_uri_read_back_sets_the_same_properties() {
    let src = uri_handler("kafkasrc");
    // A fresh element starts at the latest record, a URI at the last.
    src.set_property("topic", "cam1");
    assert_eq!(
        get_uri(&src).unwrap(),
        "kafka://localhost:9092/cam1?start-from=latest"
    );
    let uri = "kafka://h1:9092,h2:9093/cam.1?start-from=earliest&key=a%26b%20c\
               &caps=video/x-raw,%20format%3D%28string%29I420&timestamp-mode=original&max-lag-ms=500";
    set_uri(&src, uri).unwrap();
    assert_eq!(src.property::<String>("key"), "a&b c");
    let read_back = src.property::<String>("uri");
    let copy = uri_handler("kafkasrc");
    copy.set_property("uri", &read_back);
    for name in [
        "bootstrap-servers",
        "topic",
        "start-from",
        "key",
        "caps",
        "timestamp-mode",
        "max-lag-ms",
    ] {
        let (a, b) = (src.property_value(name), copy.property_value(name));
        assert_eq!(
            a.serialize().unwrap(),
            b.serialize().unwrap(),
            "{name} through {read_back}"
        );
    }
    assert_eq!(copy.property::<String>("uri"), read_back);
    // A URI without start-from starts at the newest keyframe.
    set_uri(&copy, "kafka://h1:9092/cam1").unwrap();
    assert_eq!(nick(&copy, "start-from"), "last");
    assert_eq!(
        get_uri(&copy).unwrap(),
        "kafka://h1:9092/cam1?key=a%26b%20c&caps=video/x-raw,%20format%3D%28string%29I420&timestamp-mode=original&max-lag-ms=500"
    );
}

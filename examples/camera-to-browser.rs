// SPDX-License-Identifier: MPL-2.0

//! Both halves of the camera-to-browser system in one program: a producer
//! pipeline (RTSP camera → kafkasink) and a viewer pipeline (kafkasrc →
//! mjpeghttpsink), with bus watching and each element's `stats` printed
//! every few seconds. Copy it as a starting point for an application.
//!
//! GST_PLUGIN_PATH=target/release cargo run --release --example camera-to-browser -- \
//!     rtsp://127.0.0.1:8554/test 127.0.0.1:9092 [topic] [http-port] [seconds]
//!
//! With `seconds`, it sends EOS to the producer after that long, so that every
//! frame accepted is acknowledged, and exits.

use gst::prelude::*;
use std::time::Duration;

fn launch(description: &str) -> Result<gst::Pipeline, Box<dyn std::error::Error>> {
    Ok(gst::parse::launch(description)?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    gst::init()?;
    let args: Vec<String> = std::env::args().collect();
    let camera = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("rtsp://127.0.0.1:8554/test");
    let brokers = args.get(2).map(String::as_str).unwrap_or("127.0.0.1:9092");
    let topic = args.get(3).map(String::as_str).unwrap_or("rtsp-stream");
    let port = args.get(4).map(String::as_str).unwrap_or("8080");
    let seconds: u64 = args.get(5).map(|s| s.parse()).transpose()?.unwrap_or(0);

    // A camera sending JPEG over RTP is published without re-encoding.
    let producer = launch(&format!(
        "rtspsrc location={camera} latency=0 ! rtpjpegdepay ! jpegparse \
         ! kafkasink name=sink topic={topic} bootstrap-servers={brokers} create-topic=true"
    ))?;
    let viewer = launch(&format!(
        "kafkasrc name=src topic={topic} bootstrap-servers={brokers} max-lag-ms=1000 \
         ! mjpeghttpsink name=http port={port}"
    ))?;

    producer.set_state(gst::State::Playing)?;
    // The viewer needs the topic the producer creates at start.
    producer.state(gst::ClockTime::from_seconds(30)).0?;
    viewer.set_state(gst::State::Playing)?;
    println!("open http://127.0.0.1:{port}/");

    let main_loop = gst::glib::MainLoop::new(None, false);
    let mut watches = Vec::new();
    for pipeline in [&producer, &viewer] {
        let main_loop = main_loop.clone();
        let name = pipeline.name();
        let watch = pipeline
            .bus()
            .ok_or("no bus")?
            .add_watch(move |_, message| {
                match message.view() {
                    gst::MessageView::Error(err) => {
                        eprintln!(
                            "{name}: error from {:?}: {} ({:?})",
                            err.src().map(|s| s.path_string()),
                            err.error(),
                            err.debug()
                        );
                        main_loop.quit();
                    }
                    gst::MessageView::Warning(warning) => {
                        eprintln!("{name}: warning: {}", warning.error());
                    }
                    gst::MessageView::Eos(_) => main_loop.quit(),
                    _ => (),
                }
                gst::glib::ControlFlow::Continue
            })?;
        watches.push(watch);
    }

    let elements: Vec<gst::Element> = [
        producer.by_name("sink"),
        viewer.by_name("src"),
        viewer.by_name("http"),
    ]
    .into_iter()
    .flatten()
    .collect();
    gst::glib::timeout_add(Duration::from_secs(5), move || {
        for element in &elements {
            println!("{}", element.property::<gst::Structure>("stats"));
        }
        gst::glib::ControlFlow::Continue
    });
    if seconds > 0 {
        let quit = main_loop.clone();
        gst::glib::timeout_add_once(Duration::from_secs(seconds), move || quit.quit());
    }

    main_loop.run();
    // EOS first, so that every frame accepted is acknowledged before stopping.
    producer.send_event(gst::event::Eos::new());
    let _ = producer.bus().ok_or("no bus")?.timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    producer.set_state(gst::State::Null)?;
    viewer.set_state(gst::State::Null)?;
    Ok(())
}

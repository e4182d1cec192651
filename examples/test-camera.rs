// SPDX-License-Identifier: MPL-2.0

//! A test RTSP camera: a moving pattern with a running wall clock, served as
//! JPEG over RTP at rtsp://127.0.0.1:8554/test (like most IP cameras'
//! MJPEG profile), so that motion and latency are visible end to end.
//!
//! cargo run --example test-camera -- [--port 8554] [--width 1280 --height 720 --fps 30]

use gst_rtsp_server::prelude::*;

fn arg(name: &str, default: u32) -> u32 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    gst::init()?;
    let (port, width, height, fps) = (
        arg("--port", 8554),
        arg("--width", 1280),
        arg("--height", 720),
        arg("--fps", 30),
    );
    let main_loop = gst::glib::MainLoop::new(None, false);
    let server = gst_rtsp_server::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&port.to_string());
    let launch = format!(
        "( videotestsrc is-live=true pattern=ball motion=sweep background-color=0xff203040 \
           ! video/x-raw,width={width},height={height},framerate={fps}/1 \
           ! clockoverlay time-format=\"%H:%M:%S\" font-desc=\"Sans 36\" \
           ! timeoverlay valignment=bottom font-desc=\"Sans 24\" \
           ! videoconvert ! video/x-raw,format=I420 ! jpegenc quality=85 ! rtpjpegpay name=pay0 pt=26 )"
    );
    // The RTSP server builds the pipeline only when a client asks for it,
    // and answers 503 if it cannot: build it once now, so that a missing
    // element stops the camera at start, named.
    if let Err(err) = gst::parse::launch(&launch) {
        eprintln!(
            "test-camera: cannot build the camera pipeline: {err} (scripts/debian-packages.txt names the package of each element)"
        );
        std::process::exit(1);
    }
    let factory = gst_rtsp_server::RTSPMediaFactory::new();
    factory.set_launch(&launch);
    // One pipeline for every viewer, as a camera has. RTP/JPEG carries
    // 4:2:0 JPEGs only, hence I420 before the encoder.
    factory.set_shared(true);
    server
        .mount_points()
        .ok_or("the RTSP server has no mount points")?
        .add_factory("/test", factory);
    let _source = server.attach(None)?;
    println!("rtsp://127.0.0.1:{port}/test");
    main_loop.run();
    Ok(())
}

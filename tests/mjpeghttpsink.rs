// SPDX-License-Identifier: MPL-2.0

//! mjpeghttpsink with real HTTP clients over real sockets on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http::*;
use common::*;
use gst::prelude::*;

#[test]
fn clients_receive_identical_frames_in_order_with_part_headers() {
    let server = Server::start("");
    let clients: Vec<PartReader> = (0..3)
        .map(|_| PartReader::open(get(server.port, "/video_feed", "")))
        .collect();
    assert!(wait_until(Duration::from_secs(10), || server
        .stats()
        .get::<u32>("clients")
        .unwrap()
        == 3));
    let received: Vec<Arc<Mutex<Vec<Part>>>> =
        (0..3).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let readers: Vec<_> = clients
        .into_iter()
        .zip(received.iter().cloned())
        .map(|(mut client, into)| {
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let part = client.next();
                    into.lock().unwrap().push(part);
                }
                client
            })
        })
        .collect();
    for i in 0..10 {
        server.push(&jpeg(i));
        // One frame at a time, so that latest-frame-wins skips none.
        assert!(wait_until(Duration::from_secs(10), || received
            .iter()
            .all(|r| r.lock().unwrap().len() > i)));
    }
    // Still connected, so that /stats lists them below.
    let _clients: Vec<PartReader> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    for parts in &received {
        let parts = parts.lock().unwrap();
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(part.body, jpeg(i));
            assert_eq!(header(part, "content-type"), "image/jpeg");
            assert_eq!(header(part, "content-length"), jpeg(i).len().to_string());
            assert_eq!(header(part, "x-frame-seq"), (i + 1).to_string());
            let timestamp: f64 = header(part, "x-timestamp").parse().unwrap();
            assert!((timestamp * 1000.0 - unix_now_ms() as f64).abs() < 60_000.0);
            assert!(!part.last);
        }
    }
    // What /stats says matches what the clients counted.
    let stats = get(server.port, "/stats", "").body_string();
    assert_eq!(stats.matches("\"frames_sent\":10,").count(), 3, "{stats}");
    assert_eq!(server.stats().get::<u64>("frames-sent").unwrap(), 30);
    assert_eq!(server.stats().get::<u64>("frames-in").unwrap(), 10);
}

#[test]
fn newest_frame_is_sent_on_connect_and_resent_when_idle() {
    let server = Server::start("keepalive-ms=100");
    server.push(&jpeg(1));
    assert!(wait_until(Duration::from_secs(10), || server
        .stats()
        .get::<u64>("frames-in")
        .unwrap()
        == 1));
    let mut client = PartReader::open(get(server.port, "/video_feed", ""));
    let started = Instant::now();
    for _ in 0..4 {
        assert_eq!(client.next().body, jpeg(1));
    }
    // Three resends at 100 ms apart: well under the 1 s default.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_client_that_never_reads_slows_nobody() {
    init();
    let pipeline = gst::parse::launch(
        "videotestsrc is-live=true pattern=snow ! video/x-raw,width=640,height=480,framerate=30/1 ! jpegenc quality=95 \
         ! mjpeghttpsink name=sink port=0 send-timeout-ms=1000",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    let removed = Arc::new(AtomicU64::new(0));
    let counter = removed.clone();
    sink.connect("client-removed", false, move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        None
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let port = sink.property::<u32>("bound-port") as u16;

    // The stalled client asks for the stream and never reads a byte.
    let mut stalled = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stalled
        .write_all(b"GET /video_feed HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut fast = PartReader::open(get(port, "/video_feed", ""));
    fast.next();
    let frames_in_before = sink
        .property::<gst::Structure>("stats")
        .get::<u64>("frames-in")
        .unwrap();
    let started = Instant::now();
    let mut count = 0;
    while started.elapsed() < Duration::from_secs(3) {
        fast.next();
        count += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let frames_in = sink
        .property::<gst::Structure>("stats")
        .get::<u64>("frames-in")
        .unwrap()
        - frames_in_before;
    let fast_fps = count as f64 / elapsed;
    let input_fps = frames_in as f64 / elapsed;
    eprintln!("fast client {fast_fps:.1} fps, pipeline {input_fps:.1} fps");
    // Relative to what the pipeline produced in the same window, so that a
    // busy machine does not decide the outcome: a blocked pipeline would
    // produce next to nothing, a starved fast client would lag it.
    assert!(input_fps > 15.0, "pipeline slowed to {input_fps:.1} fps");
    assert!(
        fast_fps > 0.8 * input_fps,
        "fast client {fast_fps:.1} fps of {input_fps:.1}"
    );
    // The stalled client is dropped once its socket stays full.
    assert!(
        wait_until(Duration::from_secs(30), || removed.load(Ordering::SeqCst)
            >= 1),
        "stalled client not dropped"
    );
    drop(stalled);
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn max_clients_answers_503() {
    let server = Server::start("max-clients=2");
    let _a = PartReader::open(get(server.port, "/video_feed", ""));
    let _b = PartReader::open(get(server.port, "/video_feed", ""));
    let third = get(server.port, "/video_feed", "");
    assert_eq!(third.status, 503);
    assert!(third.header("retry-after").is_some());
}

#[test]
fn snapshot_before_and_after_the_first_frame() {
    let server = Server::start("");
    let before = get(server.port, "/snapshot.jpg", "");
    assert_eq!(before.status, 503);
    assert_eq!(before.header("retry-after"), Some("1"));
    server.push(&jpeg(7));
    assert!(wait_until(Duration::from_secs(10), || get(
        server.port,
        "/snapshot.jpg",
        ""
    )
    .status
        == 200));
    let mut after = get(server.port, "/snapshot.jpg", "");
    assert_eq!(after.header("content-type"), Some("image/jpeg"));
    assert_eq!(
        after
            .header("cache-control")
            .map(|v| v.contains("no-store")),
        Some(true)
    );
    let mut body = Vec::new();
    after.body.read_to_end(&mut body).unwrap();
    assert_eq!(body, jpeg(7));
}

#[test]
fn auth_guards_every_endpoint() {
    let server = Server::start("auth=viewer:secret auth-token=tok3n");
    server.push(&jpeg(1));
    assert!(wait_until(Duration::from_secs(10), || server
        .stats()
        .get::<u64>("frames-in")
        .unwrap()
        == 1));
    // viewer:secret in base64.
    let basic = "Authorization: Basic dmlld2VyOnNlY3JldA==\r\n";
    let wrong = "Authorization: Basic dmlld2VyOndyb25n\r\n";
    for path in ["/", "/stats", "/snapshot.jpg", "/video_feed"] {
        let denied = get(server.port, path, "");
        assert_eq!(denied.status, 401, "{path}");
        assert!(
            denied
                .header("www-authenticate")
                .unwrap()
                .starts_with("Basic")
        );
        assert_eq!(get(server.port, path, wrong).status, 401, "{path}");
        assert_eq!(get(server.port, path, basic).status, 200, "{path}");
        assert_eq!(
            get(server.port, &format!("{path}?token=tok3n"), "").status,
            200,
            "{path}"
        );
        assert_eq!(
            get(server.port, &format!("{path}?token=nope"), "").status,
            401,
            "{path}"
        );
    }
    // The page passes the token on to its <img>.
    let page = get(server.port, "/?token=tok3n", "").body_string();
    assert!(page.contains("src=\"/video_feed?token=tok3n\""), "{page}");
}

#[test]
fn eos_ends_every_response_with_the_closing_boundary() {
    let server = Server::start("");
    let mut clients: Vec<PartReader> = (0..2)
        .map(|_| PartReader::open(get(server.port, "/video_feed", "")))
        .collect();
    assert!(wait_until(Duration::from_secs(10), || server
        .stats()
        .get::<u32>("clients")
        .unwrap()
        == 2));
    server.push(&jpeg(3));
    for client in &mut clients {
        let part = client.next();
        assert_eq!(part.body, jpeg(3));
        assert!(!part.last);
    }
    server.appsrc.end_of_stream().unwrap();
    for client in &mut clients {
        let last = client.next();
        assert!(last.last, "closing boundary");
        assert_eq!(last.body, jpeg(3));
        // Then the response ends cleanly (chunked terminator, no more data).
        let mut rest = Vec::new();
        client.body.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
}

#[test]
fn restart_on_the_same_port_and_refuse_a_taken_port() {
    init();
    let port = free_port();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! jpegenc ! mjpeghttpsink port={port}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut client = PartReader::open(get(port, "/video_feed", ""));
    client.next();
    pipeline.set_state(gst::State::Null).unwrap();
    // The connection was closed with the pipeline...
    let mut rest = Vec::new();
    assert!(client.body.read_to_end(&mut rest).is_err() || rest.len() < 10_000_000);
    // ...and the port is free again at once.
    pipeline.set_state(gst::State::Playing).unwrap();
    PartReader::open(get(port, "/video_feed", "")).next();
    pipeline.set_state(gst::State::Null).unwrap();

    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let message = expect_error(run(&pipeline, Duration::from_secs(10)));
    assert!(
        message.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{message}"
    );
}

#[test]
fn two_sinks_share_a_port_but_not_a_path() {
    init();
    let port = free_port();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true pattern=ball ! jpegenc ! mjpeghttpsink port={port} path=/cam1 \
         videotestsrc is-live=true pattern=snow ! jpegenc ! mjpeghttpsink port={port} path=/cam2"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for path in ["/cam1", "/cam2"] {
        let part = PartReader::open(get(port, path, "")).next();
        assert!(part.body.starts_with(&[0xff, 0xd8]));
    }
    let page = get(port, "/", "").body_string();
    assert!(
        page.contains("src=\"/cam1\"") && page.contains("src=\"/cam2\""),
        "{page}"
    );
    assert_eq!(get(port, "/snapshot.jpg?stream=/cam2", "").status, 200);

    let duplicate = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! jpegenc ! mjpeghttpsink port={port} path=/cam1"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let message = expect_error(run(&duplicate, Duration::from_secs(10)));
    assert!(
        message.contains("path /cam1 is already served"),
        "{message}"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn unknown_paths_methods_and_malformed_requests() {
    let server = Server::start("");
    assert_eq!(get(server.port, "/nope", "").status, 404);
    assert_eq!(get(server.port, "/../../etc/passwd", "").status, 404);
    assert_eq!(get(server.port, "/video_feed/../stats", "").status, 404);
    let post = request(
        server.port,
        "POST /video_feed HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(request(server.port, "BLAH\r\n\r\n").status, 400);
    let head = request(
        server.port,
        "HEAD /video_feed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(head.status, 200);
    assert!(
        head.header("content-type")
            .unwrap()
            .starts_with("multipart/x-mixed-replace")
    );
    let options = request(
        server.port,
        "OPTIONS /video_feed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(options.status, 204);
    assert!(
        options.header("access-control-allow-origin").is_none(),
        "no CORS unless asked"
    );
    // HTTP/1.0 gets a close-delimited stream.
    let old = request(server.port, "GET /video_feed HTTP/1.0\r\n\r\n");
    assert_eq!(old.status, 200);
    assert!(old.header("transfer-encoding").is_none());
}

#[test]
fn cors_origin_is_sent_when_set() {
    let server = Server::start("cors-origin=https://dashboard.example");
    let options = request(
        server.port,
        "OPTIONS /video_feed HTTP/1.1\r\nHost: x\r\nOrigin: https://dashboard.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        options.header("access-control-allow-origin"),
        Some("https://dashboard.example")
    );
    let stats = get(server.port, "/stats", "");
    assert_eq!(
        stats.header("access-control-allow-origin"),
        Some("https://dashboard.example")
    );
}

#[test]
fn buffers_that_are_not_jpeg_are_skipped_with_a_warning() {
    let server = Server::start("");
    let bus = server.pipeline.bus().unwrap();
    server.push(b"definitely not a jpeg");
    server.push(&jpeg(2));
    let warning = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Warning],
        )
        .expect("a warning");
    let gst::MessageView::Warning(warning) = warning.view() else {
        unreachable!()
    };
    assert!(
        warning.error().message().contains("not a JPEG"),
        "{}",
        warning.error().message()
    );
    assert!(wait_until(Duration::from_secs(10), || server
        .stats()
        .get::<u64>("frames-in")
        .unwrap()
        == 1));
    assert_eq!(server.stats().get::<u64>("not-jpeg").unwrap(), 1);
    let mut snapshot = get(server.port, "/snapshot.jpg", "");
    let mut body = Vec::new();
    snapshot.body.read_to_end(&mut body).unwrap();
    assert_eq!(body, jpeg(2));
}

#[test]
fn caps_other_than_jpeg_are_refused() {
    init();
    let pipeline = gst::parse::launch("videotestsrc num-buffers=1 ! mjpeghttpsink port=0");
    assert!(
        pipeline.is_err(),
        "linking raw video to mjpeghttpsink must fail"
    );
}

#[test]
fn slow_headers_are_cut_off() {
    let server = Server::start("");
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    socket
        .write_all(b"GET /video_feed HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    // The server gives up on the unfinished request and closes.
    let _ = socket.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    assert!(server.stats().get::<u32>("clients").unwrap() == 0);
}

#[test]
fn oversized_headers_are_refused() {
    let server = Server::start("");
    let huge = format!(
        "GET /video_feed HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = socket.write_all(huge.as_bytes());
    let mut response = String::new();
    let _ = socket.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 431")
            || response.starts_with("HTTP/1.1 400")
            || response.is_empty(),
        "{response}"
    );
    assert!(server.stats().get::<u32>("clients").unwrap() == 0);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start("");
    let mut socket = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket
        .write_all(
            b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /stats HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /snapshot.jpg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut all = String::new();
    socket.read_to_string(&mut all).unwrap();
    let statuses: Vec<&str> = all
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &all[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["404", "200", "503"], "{all}");
}

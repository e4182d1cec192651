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
    // What /stats says matches what the clients counted, and the property.
    let text = get(server.port, "/stats", "").body_string();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let stream = &json["streams"][0];
    let clients = stream["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 3, "{text}");
    assert!(clients.iter().all(|c| c["frames_sent"] == 10), "{text}");
    let property = server.stats();
    assert_eq!(property.get::<u64>("frames-sent").unwrap(), 30);
    assert_eq!(property.get::<u64>("frames-in").unwrap(), 10);
    let jpeg_bytes: usize = (0..10).map(|i| jpeg(i).len()).sum();
    assert_eq!(
        property.get::<u64>("bytes-sent").unwrap(),
        3 * jpeg_bytes as u64
    );
    assert_eq!(stream["path"], "/video_feed");
    for (json_name, name) in [
        ("frames_in", "frames-in"),
        ("frames_sent", "frames-sent"),
        ("frames_skipped", "frames-skipped"),
        ("bytes_sent", "bytes-sent"),
        ("not_jpeg", "not-jpeg"),
    ] {
        assert_eq!(
            stream[json_name].as_u64(),
            Some(property.get::<u64>(name).unwrap()),
            "{json_name} in {text}"
        );
    }
    // The three viewers and the /stats request itself.
    assert_eq!(json["connections"].as_u64(), Some(4), "{text}");
}

#[test]
fn newest_frame_is_sent_on_connect_and_resent_when_idle() {
    let server = Server::start("keepalive-ms=100");
    server.push(&jpeg(1));
    server.wait_frames_in(1);
    let mut client = PartReader::open(get(server.port, "/video_feed", ""));
    assert_eq!(client.next().body, jpeg(1));
    let mut arrivals = vec![Instant::now()];
    for _ in 0..5 {
        assert_eq!(client.next().body, jpeg(1));
        arrivals.push(Instant::now());
    }
    // The resends come every 100 ms, not at the 1 s default.
    let mut intervals: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    intervals.sort();
    let median = intervals[intervals.len() / 2];
    assert!(
        median >= Duration::from_millis(80) && median < Duration::from_millis(400),
        "resent every {median:?}: {intervals:?}"
    );
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
    // The stalled client is dropped once its socket stays full, and its
    // connection closed: the server's end of it is gone.
    assert!(
        wait_until(Duration::from_secs(30), || removed.load(Ordering::SeqCst)
            >= 1),
        "stalled client not dropped"
    );
    drop(fast);
    assert!(
        wait_until(Duration::from_secs(15), || server_sockets(port) == 1),
        "{} sockets on the server's port",
        server_sockets(port)
    );
    let closed = wait_closed(&mut stalled, Duration::from_secs(15));
    assert!(closed.is_ok(), "stalled client: {closed:?}");
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
    server.wait_frames_in(1);
    // viewer:secret in base64.
    let basic = "Authorization: Basic dmlld2VyOnNlY3JldA==\r\n";
    let wrong = "Authorization: Basic dmlld2VyOndyb25n\r\n";
    for path in ["/", "/stats", "/metrics", "/snapshot.jpg", "/video_feed"] {
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
    let mut client = send_request(port, "GET /video_feed HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut start = [0u8; 1024];
    client.read_exact(&mut start).unwrap();
    assert!(start.starts_with(b"HTTP/1.1 200 OK"));
    pipeline.set_state(gst::State::Null).unwrap();
    // The connection was closed with the pipeline...
    let closed = wait_closed(&mut client, Duration::from_secs(10));
    assert!(closed.is_ok(), "after stopping: {closed:?}");
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
    server.wait_frames_in(1);
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
    assert!(wait_until(Duration::from_secs(10), || server
        .stats()
        .get::<u64>("connections")
        .unwrap()
        == 1));
    let started = Instant::now();
    // The server gives up on the unfinished request and closes.
    let closed = wait_closed(&mut socket, Duration::from_secs(15));
    assert!(closed.is_ok(), "{closed:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    assert!(wait_until(Duration::from_secs(10), || server
        .stats()
        .get::<u64>("connections")
        .unwrap()
        == 0));
    assert_eq!(server_sockets(server.port), 1);
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
    // The server may refuse before it has read everything, and reset.
    let _ = socket.write_all(huge.as_bytes());
    let mut response = Vec::new();
    let outcome = match socket.read_to_end(&mut response) {
        Ok(_) => "closed".to_string(),
        Err(err) => err.to_string(),
    };
    let response = String::from_utf8_lossy(&response);
    let refused = response.starts_with("HTTP/1.1 431") || response.starts_with("HTTP/1.1 400");
    // Refused with a status, or reset; not left hanging, and never served.
    assert!(
        refused || outcome.contains("reset"),
        "{outcome}: {response:?}"
    );
    assert!(wait_until(Duration::from_secs(10), || server
        .stats()
        .get::<u64>("connections")
        .unwrap()
        == 0));
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

fn connections(server: &Server) -> u64 {
    server.stats().get::<u64>("connections").unwrap()
}

#[test]
fn never_reading_clients_are_disconnected_and_their_sockets_released() {
    const VIEWERS: usize = 100;
    let server = Server::start("send-timeout-ms=1000 keepalive-ms=100");
    // Resent every 100 ms, so that the viewers' sockets fill up.
    server.push(&big_jpeg(256 * 1024));
    server.wait_frames_in(1);
    let baseline = server_sockets(server.port);
    assert_eq!(baseline, 1, "the listener");
    let fds_before = open_fds();
    let mut viewers: Vec<TcpStream> = (0..VIEWERS)
        .map(|_| send_request(server.port, "GET /video_feed HTTP/1.1\r\nHost: x\r\n\r\n"))
        .collect();
    assert!(
        wait_until(Duration::from_secs(20), || server_sockets(server.port)
            == baseline + VIEWERS),
        "{} sockets",
        server_sockets(server.port)
    );
    let fds_connected = open_fds();
    let started = Instant::now();
    // The server closes every one of them: its ends are gone...
    assert!(
        wait_until(Duration::from_secs(30), || server_sockets(server.port)
            == baseline),
        "{} of {VIEWERS} stalled connections still open",
        server_sockets(server.port) - baseline
    );
    let closed_after = started.elapsed();
    assert_eq!(server.stats().get::<u32>("clients").unwrap(), 0);
    assert_eq!(connections(&server), 0);
    // ...and each viewer sees the end of its connection.
    for (i, viewer) in viewers.iter_mut().enumerate() {
        let closed = wait_closed(viewer, Duration::from_secs(10));
        assert!(closed.is_ok(), "viewer {i}: {closed:?}");
    }
    drop(viewers);
    // Other tests of this binary run meanwhile: a margin for their
    // descriptors, well under the hundred that would leak.
    assert!(wait_until(Duration::from_secs(10), || open_fds() <= fds_before + 30));
    eprintln!(
        "{VIEWERS} never-reading viewers: process fds {fds_before} -> {fds_connected} -> {}, \
         server sockets closed {closed_after:?} after all were open",
        open_fds()
    );
}

#[test]
fn a_never_reading_snapshot_client_is_disconnected() {
    let server = Server::start("send-timeout-ms=1000");
    // Far more than the socket buffers hold.
    server.push(&big_jpeg(32 * 1024 * 1024));
    server.wait_frames_in(1);
    let mut viewer = send_request(server.port, "GET /snapshot.jpg HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(wait_until(Duration::from_secs(10), || server_sockets(
        server.port
    ) == 2));
    assert!(
        wait_until(Duration::from_secs(15), || server_sockets(server.port) == 1),
        "the stalled snapshot connection is still open"
    );
    let closed = wait_closed(&mut viewer, Duration::from_secs(10));
    assert!(closed.is_ok(), "{closed:?}");
    assert_eq!(connections(&server), 0);
}

#[test]
fn connections_beyond_max_connections_are_refused_at_once() {
    let server = Server::start("max-connections=4");
    server.push(&jpeg(1));
    let mut open: Vec<PartReader> = (0..4)
        .map(|_| {
            let mut client = PartReader::open(get(server.port, "/video_feed", ""));
            assert_eq!(client.next().body, jpeg(1));
            client
        })
        .collect();
    assert_eq!(connections(&server), 4);
    let started = Instant::now();
    let mut extra = send_request(server.port, "GET /video_feed HTTP/1.1\r\nHost: x\r\n\r\n");
    // A 503, or a reset when the server closed before reading the request.
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = [0u8; 12];
    let outcome = extra.read_exact(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 503")
            || outcome
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{outcome:?}: {:?}",
        String::from_utf8_lossy(&answer)
    );
    let closed = wait_closed(&mut extra, Duration::from_secs(2));
    assert!(closed.is_ok(), "{closed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let stats = server.stats();
    assert_eq!(stats.get::<u64>("connections-refused").unwrap(), 1);
    assert_eq!(stats.get::<u64>("connections").unwrap(), 4);
    assert_eq!(stats.get::<u32>("clients").unwrap(), 4);
    // A place frees up: the next connection is served.
    drop(open.pop());
    assert!(wait_until(Duration::from_secs(10), || connections(&server) == 3));
    let mut next = PartReader::open(get(server.port, "/video_feed", ""));
    assert_eq!(next.next().body, jpeg(1));
}

#[test]
fn a_stuck_signal_handler_cannot_grow_the_signal_queue_without_end() {
    let server = Server::start("max-clients=2000");
    server.push(&jpeg(1));
    server.wait_frames_in(1);
    // The first handler call blocks until the test ends: every later event
    // waits in the queue.
    let (release, stuck) = std::sync::mpsc::channel::<()>();
    let stuck = Mutex::new(stuck);
    server.sink.connect("client-added", false, move |_| {
        let _ = stuck.lock().unwrap().recv();
        None
    });
    // 600 viewers come and go: 1200 events, more than the queue holds.
    for _ in 0..600 {
        let mut client = PartReader::open(get(server.port, "/video_feed", ""));
        assert_eq!(client.next().body, jpeg(1));
    }
    let bus = server.pipeline.bus().unwrap();
    let warning = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Warning],
        )
        .expect("a warning about dropped signals");
    let gst::MessageView::Warning(warning) = warning.view() else {
        unreachable!()
    };
    let text = warning.error().message().to_string();
    assert!(
        text.contains("dropped") && text.contains("client-added/client-removed"),
        "{text}"
    );
    drop(release);
}

#[test]
fn a_slow_signal_handler_delays_no_client() {
    let server = Server::start("");
    server.push(&jpeg(1));
    server.wait_frames_in(1);
    let handled_on: Arc<Mutex<Vec<String>>> = Arc::default();
    let threads = handled_on.clone();
    server.sink.connect("client-added", false, move |_| {
        let thread = std::thread::current();
        threads
            .lock()
            .unwrap()
            .push(thread.name().unwrap_or_default().to_string());
        std::thread::sleep(Duration::from_secs(2));
        None
    });
    let started = Instant::now();
    let viewers: Vec<_> = (0..3)
        .map(|_| {
            let port = server.port;
            std::thread::spawn(move || {
                let mut client = PartReader::open(get(port, "/video_feed", ""));
                assert_eq!(client.next().body, jpeg(1));
                client
            })
        })
        .collect();
    let _viewers: Vec<PartReader> = viewers.into_iter().map(|v| v.join().unwrap()).collect();
    // Three handlers of 2 s each ran (or are running) meanwhile.
    let served_in = started.elapsed();
    assert!(
        served_in < Duration::from_millis(1500),
        "first frames after {served_in:?}"
    );
    assert_eq!(get(server.port, "/stats", "").status, 200);
    assert!(wait_until(Duration::from_secs(15), || handled_on
        .lock()
        .unwrap()
        .len()
        == 3));
    let threads = handled_on.lock().unwrap().clone();
    assert!(
        threads.iter().all(|t| t == "mjpeghttpsink-signals"),
        "{threads:?}"
    );
}

#[test]
fn secrets_read_back_redacted() {
    let server = Server::start("auth=viewer:secret auth-token=tok3n");
    for name in ["auth", "auth-token"] {
        assert_eq!(
            server.sink.property::<Option<String>>(name).as_deref(),
            Some("***"),
            "{name}"
        );
    }
    let dot = server
        .pipeline
        .debug_to_dot_data(gst::DebugGraphDetails::all())
        .to_string();
    assert!(dot.contains(r#"auth=\"***\""#), "{dot}");
    assert!(
        !dot.contains("secret") && !dot.contains("tok3n"),
        "the secrets are in the pipeline graph"
    );
    // Still the real values at work.
    assert_eq!(get(server.port, "/stats?token=tok3n", "").status, 200);
    let open = Server::start("");
    for name in ["auth", "auth-token"] {
        assert_eq!(open.sink.property::<Option<String>>(name), None, "{name}");
    }
}

#[test]
fn token_is_percent_decoded_and_the_basic_scheme_is_case_insensitive() {
    let server = Server::start("auth=viewer:secret auth-token=\"t&k=n/é+1\"");
    for (query, status) in [
        ("?token=t%26k%3Dn%2F%C3%A9%2B1", 200),
        ("?token=t%26k%3dn%2f%c3%a9+1", 200),
        ("?token=t&k=n/é+1", 401),
        ("?token=t%26k%3Dn%2F%C3%A9%2B", 401),
        ("?token=%zz", 401),
        ("?token=%", 401),
    ] {
        assert_eq!(
            get(server.port, &format!("/stats{query}"), "").status,
            status,
            "{query}"
        );
    }
    for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
        let header = format!("Authorization: {scheme} dmlld2VyOnNlY3JldA==\r\n");
        assert_eq!(get(server.port, "/stats", &header).status, 200, "{scheme}");
    }
    assert_eq!(
        get(
            server.port,
            "/stats",
            "Authorization: Bearer dmlld2VyOnNlY3JldA==\r\n"
        )
        .status,
        401
    );
    // The page hands the token on, encoded, to its <img>.
    let page = get(server.port, "/?token=t%26k%3Dn%2F%C3%A9%2B1", "").body_string();
    assert!(
        page.contains("src=\"/video_feed?token=t%26k%3Dn%2F%C3%A9%2B1\""),
        "{page}"
    );
}

fn basic(credentials: &str) -> String {
    use base64::Engine;
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

#[test]
fn streams_sharing_a_port_keep_their_own_auth_and_cors() {
    init();
    let port = free_port();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true pattern=ball ! jpegenc ! mjpeghttpsink port={port} path=/cam1 \
         auth=a:one cors-origin=https://one.example \
         videotestsrc is-live=true pattern=snow ! jpegenc ! mjpeghttpsink port={port} path=/cam2 \
         auth=b:two cors-origin=https://two.example"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let (one, two) = (basic("a:one"), basic("b:two"));
    let mut viewer = PartReader::open(get(
        port,
        "/cam2",
        &format!("{two}User-Agent: viewer-of-cam2\r\n"),
    ));
    viewer.next();

    assert_eq!(get(port, "/", "").status, 401);
    assert_eq!(get(port, "/stats", "").status, 401);
    assert_eq!(get(port, "/stats", &basic("a:two")).status, 401);
    let page = get(port, "/", &one).body_string();
    assert!(page.contains("/cam1") && !page.contains("/cam2"), "{page}");
    let stats = get(port, "/stats", &one).body_string();
    assert!(
        stats.contains("/cam1") && !stats.contains("/cam2") && !stats.contains("viewer-of-cam2"),
        "{stats}"
    );
    let stats = get(port, "/stats", &two).body_string();
    assert!(
        !stats.contains("/cam1") && stats.contains("viewer-of-cam2"),
        "{stats}"
    );
    assert_eq!(get(port, "/metrics", "").status, 401);
    let metrics = get(port, "/metrics", &two).body_string();
    assert!(
        !metrics.contains("/cam1") && metrics.contains("{stream=\"/cam2\"}"),
        "{metrics}"
    );
    assert_eq!(get(port, "/cam1", &two).status, 401);
    assert_eq!(get(port, "/snapshot.jpg?stream=/cam1", &two).status, 401);
    // Without ?stream=, the first stream the credentials open.
    assert!(wait_until(Duration::from_secs(10), || get(
        port,
        "/snapshot.jpg",
        &two
    )
    .status
        == 200));

    // Each stream allows its own origin only.
    let origin = |name: &str| format!("Origin: https://{name}.example\r\n");
    let allowed = |path: &str, extra: &str| {
        let response = get(port, path, extra);
        response
            .header("access-control-allow-origin")
            .map(str::to_string)
    };
    assert_eq!(
        allowed(
            "/snapshot.jpg?stream=/cam2",
            &format!("{two}{}", origin("two"))
        )
        .as_deref(),
        Some("https://two.example")
    );
    assert_eq!(
        allowed(
            "/snapshot.jpg?stream=/cam2",
            &format!("{two}{}", origin("one"))
        ),
        None
    );
    assert_eq!(
        allowed(
            "/snapshot.jpg?stream=/cam1",
            &format!("{one}{}", origin("one"))
        )
        .as_deref(),
        Some("https://one.example")
    );
    assert_eq!(allowed("/stats", &format!("{two}{}", origin("one"))), None);
    assert_eq!(
        allowed("/stats", &format!("{two}{}", origin("two"))).as_deref(),
        Some("https://two.example")
    );
    let preflight = request(
        port,
        "OPTIONS /cam2 HTTP/1.1\r\nHost: x\r\nOrigin: https://two.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://two.example")
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn an_invalid_cors_origin_is_an_error_at_start() {
    init();
    for origin in [
        "https://a.example, https://b.example",
        "https://a.example/page",
        "a.example",
        "https://a.example\r\nX-Injected: 1",
    ] {
        let pipeline = gst::parse::launch(
            "videotestsrc is-live=true ! jpegenc ! mjpeghttpsink name=sink port=0",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        pipeline
            .by_name("sink")
            .unwrap()
            .set_property("cors-origin", origin);
        let message = expect_error(run(&pipeline, Duration::from_secs(10)));
        assert!(
            message.contains("cors-origin") && message.contains("is not an origin"),
            "{origin:?}: {message}"
        );
    }
}

#[test]
fn a_viewer_reading_slower_than_the_stream_is_disconnected() {
    let server = Server::start("send-timeout-ms=1000 keepalive-ms=100");
    // 2.5 MB/s of resends against a viewer that reads 640 KB/s: its socket
    // keeps accepting a little, but never a frame within send-timeout-ms.
    server.push(&big_jpeg(256 * 1024));
    server.wait_frames_in(1);
    let mut viewer = send_request(server.port, "GET /video_feed HTTP/1.1\r\nHost: x\r\n\r\n");
    viewer
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let outcome = loop {
        match viewer.read(&mut buf) {
            Ok(0) => break "eof".to_string(),
            Ok(_) => std::thread::sleep(Duration::from_millis(100)),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(err) => break err.to_string(),
        }
        // The socket fills within a second or two, then send-timeout-ms;
        // not the header timeout of an idle connection after the response.
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "the slow viewer is still connected"
        );
    };
    eprintln!("slow viewer: {outcome} after {:?}", started.elapsed());
    assert!(wait_until(Duration::from_secs(10), || server_sockets(
        server.port
    ) == 1));
    assert_eq!(server.stats().get::<u32>("clients").unwrap(), 0);
}

/// `/metrics` read by Prometheus' own Python parser, as a map from sample
/// name to its value per `stream` label ("" for server-wide samples).
fn parsed_metrics(port: u16) -> serde_json::Value {
    let response = get(port, "/metrics", "");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = response.body_string();
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = {}\n\
        for family in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       out.setdefault(s.name, {})[s.labels.get('stream', '')] = s.value\n\
        print(json.dumps(out))\n";
    let mut child = std::process::Command::new(python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the parser refused:\n{text}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn metrics_parse_as_prometheus_text_and_match_stats() {
    // No keepalive resends between reading /metrics and /stats.
    let server = Server::start("keepalive-ms=3600000 path=/cam\"1\\");
    let mut viewer = PartReader::open(get(server.port, "/cam%221%5C", ""));
    // A client that came and went still counts in the totals.
    let mut early = PartReader::open(get(server.port, "/cam%221%5C", ""));
    server.push(&jpeg(0));
    assert_eq!(early.next().body, jpeg(0));
    assert_eq!(viewer.next().body, jpeg(0));
    drop(early);
    assert!(wait_until(Duration::from_secs(10), || server
        .stats()
        .get::<u32>("clients")
        .unwrap()
        == 1));
    let mut bytes = jpeg(0).len() * 2;
    for i in 1..5 {
        server.push(&jpeg(i));
        assert_eq!(viewer.next().body, jpeg(i));
        bytes += jpeg(i).len();
    }

    // The page links the stream by its escaped path.
    let page = get(server.port, "/", "").body_string();
    assert!(
        page.contains("<img src=\"/cam%221%5C\" alt=\"/cam&quot;1\\\">"),
        "{page}"
    );

    // Only the viewer's connection is left open: the page's has closed.
    assert!(wait_until(Duration::from_secs(10), || server
        .stats()
        .get::<u64>("connections")
        .unwrap()
        == 1));
    let metrics = parsed_metrics(server.port);
    let stats: serde_json::Value =
        serde_json::from_str(&get(server.port, "/stats", "").body_string()).unwrap();
    let stream = &stats["streams"][0];
    let sample = |name: &str| metrics[name]["/cam\"1\\"].as_f64().unwrap();
    assert_eq!(sample("mjpeghttpsink_frames_in_total"), 5.0);
    assert_eq!(sample("mjpeghttpsink_clients"), 1.0);
    assert_eq!(sample("mjpeghttpsink_clients_opened_total"), 2.0);
    assert_eq!(sample("mjpeghttpsink_frames_sent_total"), 6.0);
    assert_eq!(sample("mjpeghttpsink_bytes_sent_total"), bytes as f64);
    assert_eq!(sample("mjpeghttpsink_not_jpeg_total"), 0.0);
    let age = sample("mjpeghttpsink_last_frame_age_seconds");
    assert!((0.0..10.0).contains(&age), "{age}");
    for (metric, field) in [
        ("mjpeghttpsink_frames_in_total", "frames_in"),
        ("mjpeghttpsink_clients_opened_total", "clients_total"),
        ("mjpeghttpsink_frames_sent_total", "frames_sent_total"),
        ("mjpeghttpsink_frames_skipped_total", "frames_skipped_total"),
        ("mjpeghttpsink_bytes_sent_total", "bytes_sent_total"),
    ] {
        assert_eq!(Some(sample(metric)), stream[field].as_f64(), "{metric}");
    }
    // The viewer's connection and that of the /metrics request itself.
    assert_eq!(metrics["mjpeghttpsink_connections"][""], 2.0);
}

// SPDX-License-Identifier: MPL-2.0

//! mjpeghttpsink with real HTTP clients over real sockets on 127.0.0.1.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

const BOUNDARY: &str = "gstkafkaframe";

/// A pipeline `appsrc ! mjpeghttpsink` on a free port.
struct Server {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    sink: gst::Element,
    port: u16,
}

impl Server {
    fn start(properties: &str) -> Server {
        init();
        let pipeline = gst::parse::launch(&format!(
            "appsrc name=src format=time is-live=true caps=image/jpeg ! mjpeghttpsink name=sink port=0 {properties}"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let appsrc = pipeline
            .by_name("src")
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        let sink = pipeline.by_name("sink").unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let port = sink.property::<u32>("bound-port") as u16;
        assert_ne!(port, 0);
        Server {
            pipeline,
            appsrc,
            sink,
            port,
        }
    }

    fn push(&self, data: &[u8]) {
        self.appsrc
            .push_buffer(gst::Buffer::from_slice(data.to_vec()))
            .unwrap();
    }

    fn stats(&self) -> gst::Structure {
        self.sink.property("stats")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A fake JPEG: SOI, a body that names it, EOI.
fn jpeg(i: usize) -> Vec<u8> {
    let mut data = vec![0xff, 0xd8];
    data.extend(format!("frame {i} ").repeat(50 + i % 7).into_bytes());
    data.extend([0xff, 0xd9]);
    data
}

/// Response status, headers (lower-case names) and a reader over the body,
/// de-chunked when the response is chunked.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Box<dyn BufRead + Send>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn body_string(mut self) -> String {
        let mut text = String::new();
        self.body.read_to_string(&mut text).unwrap();
        text
    }
}

struct Chunked<R> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            if line.is_empty() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.left = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if self.left == 0 {
                self.inner.read_line(&mut line)?;
                self.done = true;
                return Ok(0);
            }
        }
        let len = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..len])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

fn request(port: u16, head: &str) -> Response {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    socket.write_all(head.as_bytes()).unwrap();
    read_response(socket)
}

fn read_response(socket: TcpStream) -> Response {
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':').unwrap();
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v == "chunked");
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<u64>().unwrap());
    let body: Box<dyn BufRead + Send> = match (chunked, length) {
        (true, _) => Box::new(BufReader::new(Chunked {
            inner: reader,
            left: 0,
            done: false,
        })),
        (false, Some(length)) => Box::new(BufReader::new(reader.take(length))),
        (false, None) => Box::new(reader),
    };
    Response {
        status,
        headers,
        body,
    }
}

fn get(port: u16, path: &str, extra: &str) -> Response {
    request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n"),
    )
}

/// One part of the multipart stream.
#[derive(Debug)]
struct Part {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    last: bool,
}

/// Reads the stream's parts as a browser would.
struct PartReader {
    body: Box<dyn BufRead + Send>,
}

impl PartReader {
    fn open(response: Response) -> PartReader {
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("content-type"),
            Some(format!("multipart/x-mixed-replace;boundary={BOUNDARY}").as_str())
        );
        let mut reader = PartReader {
            body: response.body,
        };
        let mut line = String::new();
        reader.body.read_line(&mut line).unwrap();
        assert_eq!(line, format!("--{BOUNDARY}\r\n"));
        reader
    }

    fn next(&mut self) -> Part {
        let mut headers = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.body.read_line(&mut line).unwrap();
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            let (name, value) = trimmed.split_once(':').unwrap();
            headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .expect("Content-Length in every part")
            .1
            .parse()
            .unwrap();
        let mut body = vec![0; length];
        self.body.read_exact(&mut body).unwrap();
        line.clear();
        self.body.read_line(&mut line).unwrap();
        assert_eq!(line, "\r\n");
        line.clear();
        self.body.read_line(&mut line).unwrap();
        let last = match line.as_str() {
            l if l == format!("--{BOUNDARY}\r\n") => false,
            l if l == format!("--{BOUNDARY}--\r\n") => true,
            other => panic!("expected a boundary after the part, got {other:?}"),
        };
        Part {
            headers,
            body,
            last,
        }
    }
}

fn header<'a>(part: &'a Part, name: &str) -> &'a str {
    part.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap()
}

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
    assert!(input_fps > 25.0, "pipeline slowed to {input_fps:.1} fps");
    assert!(fast_fps > 25.0, "fast client slowed to {fast_fps:.1} fps");
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

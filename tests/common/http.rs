// SPDX-License-Identifier: MPL-2.0

//! HTTP test support: an `appsrc ! mjpeghttpsink` server on a free port, a
//! plain HTTP/1.1 client over real sockets and a multipart part reader.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gst::prelude::*;

use super::{element, init};

pub const BOUNDARY: &str = "gstkafkaframe";

/// A pipeline `appsrc ! mjpeghttpsink` on a free port.
pub struct Server {
    pub pipeline: gst::Pipeline,
    pub appsrc: gst_app::AppSrc,
    pub sink: gst::Element,
    pub port: u16,
}

impl Server {
    pub fn start(properties: &str) -> Server {
        init();
        let pipeline = gst::parse::launch(&format!(
            "appsrc name=src format=time is-live=true caps=image/jpeg ! mjpeghttpsink name=sink port=0 {properties}"
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let appsrc = element::<gst_app::AppSrc>(&pipeline, "src");
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

    pub fn push(&self, data: &[u8]) {
        self.appsrc
            .push_buffer(gst::Buffer::from_slice(data.to_vec()))
            .unwrap();
    }

    pub fn stats(&self) -> gst::Structure {
        self.sink.property("stats")
    }

    /// Waits up to 10 s for the sink to have taken `frames` frames.
    pub fn wait_frames_in(&self, frames: u64) {
        assert!(super::wait_until(Duration::from_secs(10), || self
            .stats()
            .get::<u64>("frames-in")
            .unwrap()
            == frames));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A fake JPEG: SOI, a body that names it, EOI.
pub fn jpeg(i: usize) -> Vec<u8> {
    let mut data = vec![0xff, 0xd8];
    data.extend(format!("frame {i} ").repeat(50 + i % 7).into_bytes());
    data.extend([0xff, 0xd9]);
    data
}

/// Response status, headers (lower-case names) and a reader over the body,
/// de-chunked when the response is chunked.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Box<dyn BufRead + Send>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_string(mut self) -> String {
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

pub fn request(port: u16, head: &str) -> Response {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    socket.write_all(head.as_bytes()).unwrap();
    read_response(socket)
}

pub fn read_response(socket: TcpStream) -> Response {
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

pub fn get(port: u16, path: &str, extra: &str) -> Response {
    request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}\r\n"),
    )
}

/// One part of the multipart stream.
#[derive(Debug)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub last: bool,
}

/// Reads the stream's parts as a browser would.
pub struct PartReader {
    pub body: Box<dyn BufRead + Send>,
}

impl PartReader {
    pub fn open(response: Response) -> PartReader {
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

    pub fn next(&mut self) -> Part {
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

pub fn header<'a>(part: &'a Part, name: &str) -> &'a str {
    part.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap()
}

/// A fake JPEG of `len` bytes.
pub fn big_jpeg(len: usize) -> Vec<u8> {
    let mut data = vec![0x55; len.max(4)];
    data[..2].copy_from_slice(&[0xff, 0xd8]);
    let end = data.len();
    data[end - 2..].copy_from_slice(&[0xff, 0xd9]);
    data
}

/// Connects and sends `head`, reading nothing.
pub fn send_request(port: u16, head: &str) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket.write_all(head.as_bytes()).unwrap();
    socket
}

/// File descriptors of this process that are TCP sockets bound to local
/// port `port`: the listener and the server's end of each connection (the
/// clients' ends have other local ports).
pub fn server_sockets(port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1]
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) && fields[9] != "0" {
                inodes.insert(format!("socket:[{}]", fields[9]));
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| inodes.contains(target.to_string_lossy().as_ref()))
        .count()
}

/// Every file descriptor of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Reads `socket` until the peer closes it (end of stream, `Ok("eof")`) or
/// resets it (`Ok` with the error); bytes still queued are read and dropped.
/// A socket that stays open past `within` is an `Err`: a read timeout is no
/// proof of a close.
pub fn wait_closed(socket: &mut TcpStream, within: Duration) -> Result<String, String> {
    let deadline = std::time::Instant::now() + within;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = vec![0; 256 * 1024];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return Ok("eof".into()),
            Ok(_) => (),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(err) => return Ok(err.to_string()),
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("still open after {within:?}"));
        }
    }
}

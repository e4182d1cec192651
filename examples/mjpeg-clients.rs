// SPDX-License-Identifier: MPL-2.0

//! A small MJPEG load generator and latency meter: N clients read a
//! `multipart/x-mixed-replace` stream as fast as they can for a while, then
//! it prints one JSON line: frames per second per client and the latency of
//! each frame from its capture time (a `capture=` JPEG comment, else the
//! part's `X-Timestamp`) to its arrival. It reads parts with or without
//! Content-Length.
//!
//! cargo run --release --example mjpeg-clients -- http://127.0.0.1:8080/video_feed [--clients 10] [--seconds 10]
//!     [--warmup-ms 1000] [--latencies FILE]
//!
//! Only loopback and other local addresses are meant as targets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct ClientResult {
    frames: u64,
    bytes: u64,
    latencies_ms: Vec<f64>,
    error: Option<String>,
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

fn arg_text(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn read_line(reader: &mut impl BufRead, line: &mut String) -> std::io::Result<()> {
    line.clear();
    if reader.read_line(line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// The capture time a frame carries: a JPEG comment `capture=<seconds>`
/// right after SOI (how the benchmark marks frames for stacks that send no
/// headers), else the part's `X-Timestamp`.
fn capture_time(jpeg: &[u8], x_timestamp: Option<f64>) -> Option<f64> {
    if jpeg.len() > 6 && jpeg[..4] == [0xff, 0xd8, 0xff, 0xfe] {
        let len = u16::from_be_bytes([jpeg[4], jpeg[5]]) as usize;
        let comment = jpeg.get(6..4 + len)?;
        let text = std::str::from_utf8(comment).ok()?;
        if let Some(value) = text.strip_prefix("capture=") {
            return value.trim_end_matches('\0').parse().ok();
        }
    }
    x_timestamp
}

/// Reads up to and including `marker`, returning what came before it.
fn read_until_marker(reader: &mut impl BufRead, marker: &[u8]) -> std::io::Result<Vec<u8>> {
    let last = *marker.last().expect("non-empty marker");
    let mut data = Vec::new();
    loop {
        let n = reader.read_until(last, &mut data)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if data.ends_with(marker) {
            data.truncate(data.len() - marker.len());
            return Ok(data);
        }
    }
}

fn client(host: &str, path: &str, until: Instant, warmup: Duration) -> ClientResult {
    let mut result = ClientResult {
        frames: 0,
        bytes: 0,
        latencies_ms: Vec::new(),
        error: None,
    };
    let mut run = || -> std::io::Result<()> {
        let mut socket = TcpStream::connect(host)?;
        socket.set_read_timeout(Some(Duration::from_secs(10)))?;
        // HTTP/1.0: a close-delimited body, no chunked framing to undo.
        write!(
            socket,
            "GET {path} HTTP/1.0\r\nUser-Agent: mjpeg-clients\r\n\r\n"
        )?;
        let mut reader = BufReader::with_capacity(1 << 20, socket);
        let mut line = String::new();
        read_line(&mut reader, &mut line)?;
        if !line.contains(" 200 ") {
            return Err(std::io::Error::other(format!("status: {}", line.trim())));
        }
        let mut boundary = None;
        loop {
            read_line(&mut reader, &mut line)?;
            if line.trim().is_empty() {
                break;
            }
            if let Some(at) = line.find("boundary=") {
                boundary = Some(line[at + 9..].trim().trim_matches('"').to_string());
            }
        }
        let boundary = boundary.ok_or_else(|| std::io::Error::other("no multipart boundary"))?;
        let marker = format!("--{boundary}").into_bytes();
        let counting_from = Instant::now() + warmup;
        let mut body = Vec::new();
        // Everything up to the first boundary is preamble.
        read_until_marker(&mut reader, &marker)?;
        while Instant::now() < until {
            // The rest of the boundary line, then the part headers.
            let (mut length, mut timestamp) = (None, None);
            read_line(&mut reader, &mut line)?;
            loop {
                read_line(&mut reader, &mut line)?;
                let trimmed = line.trim();
                if trimmed.is_empty() {
                    break;
                }
                if let Some((name, value)) = trimmed.split_once(':') {
                    match name.to_ascii_lowercase().as_str() {
                        "content-length" => length = value.trim().parse::<usize>().ok(),
                        "x-timestamp" => timestamp = value.trim().parse::<f64>().ok(),
                        _ => (),
                    }
                }
            }
            match length {
                Some(length) => {
                    body.resize(length, 0);
                    reader.read_exact(&mut body)?;
                    read_until_marker(&mut reader, &marker)?;
                }
                // No Content-Length (the tutorial's Flask app): the part
                // ends where the next boundary starts.
                None => body = read_until_marker(&mut reader, &marker)?,
            }
            let arrived = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            if Instant::now() >= counting_from {
                result.frames += 1;
                result.bytes += body.len() as u64;
                if let Some(captured) = capture_time(&body, timestamp) {
                    result
                        .latencies_ms
                        .push((arrived.as_secs_f64() - captured) * 1000.0);
                }
            }
        }
        Ok(())
    };
    if let Err(err) = run() {
        result.error = Some(err.to_string());
    }
    result
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).filter(|a| a.starts_with("http://")).expect(
        "usage: mjpeg-clients http://HOST:PORT/PATH [--clients N] [--seconds S] [--warmup-ms M]",
    );
    let rest = &url["http://".len()..];
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let clients = arg(&args, "--clients", 1);
    let seconds = arg(&args, "--seconds", 10);
    let warmup = Duration::from_millis(arg(&args, "--warmup-ms", 1000));

    let until = Instant::now() + warmup + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (host, path) = (host.to_string(), path.to_string());
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || client(&host, &path, until, warmup))
                .expect("spawn a client thread")
        })
        .collect();
    let results: Vec<ClientResult> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();

    let mut fps: Vec<f64> = results
        .iter()
        .map(|r| r.frames as f64 / seconds as f64)
        .collect();
    fps.sort_by(f64::total_cmp);
    let mut latencies: Vec<f64> = results
        .iter()
        .flat_map(|r| r.latencies_ms.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    if let Some(path) = arg_text(&args, "--latencies") {
        let lines: Vec<String> = latencies.iter().map(|l| format!("{l:.3}")).collect();
        std::fs::write(&path, lines.join("\n")).expect("write the latency file");
    }
    let errors: Vec<&str> = results.iter().filter_map(|r| r.error.as_deref()).collect();
    let total_bytes: u64 = results.iter().map(|r| r.bytes).sum();
    println!(
        "{{\"clients\":{clients},\"seconds\":{seconds},\"fps_min\":{:.2},\"fps_median\":{:.2},\"fps_max\":{:.2},\
         \"frames\":{},\"mbytes_per_s\":{:.1},\"latency_ms_p50\":{:.1},\"latency_ms_p99\":{:.1},\"latency_ms_max\":{:.1},\
         \"errors\":{},\"first_error\":{:?}}}",
        fps.first().copied().unwrap_or(0.0),
        percentile(&fps, 0.5),
        fps.last().copied().unwrap_or(0.0),
        results.iter().map(|r| r.frames).sum::<u64>(),
        total_bytes as f64 / seconds as f64 / 1e6,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        errors.len(),
        errors.first().copied().unwrap_or(""),
    );
}

// SPDX-License-Identifier: MPL-2.0

//! A small MJPEG load generator and latency meter: N clients read a
//! `multipart/x-mixed-replace` stream as fast as they can for a while, then
//! it prints one JSON line: frames per second per client and the latency of
//! each frame from its capture time (a `capture=` JPEG comment, else the
//! part's `X-Timestamp`) to its arrival. It reads parts with or without
//! Content-Length.
//!
//! cargo run --release --example mjpeg-clients -- http://127.0.0.1:8080/video_feed [URL…] [--clients 10]
//!     [--seconds 10] [--warmup-ms 1000] [--latencies FILE] [--cacert PEM]
//!
//! With several URLs the clients are spread over them in turn. `https://`
//! URLs are read over TLS (rustls, HTTP/1.0), trusting the `--cacert`
//! certificates. Only loopback and other local addresses are meant as
//! targets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

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

/// Where a client reads from.
#[derive(Clone)]
struct Target {
    host: String,
    path: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

trait Socket: Read + Write + Send {}
impl<T: Read + Write + Send> Socket for T {}

impl Target {
    fn parse(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Target {
        let (rest, tls) = match url.strip_prefix("https://") {
            Some(rest) => (rest, Some(tls.expect("https:// needs --cacert").clone())),
            None => (
                url.strip_prefix("http://").expect("an http(s):// URL"),
                None,
            ),
        };
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        Target {
            host: host.to_string(),
            path: if path.is_empty() { "/" } else { path }.to_string(),
            tls,
        }
    }

    fn connect(&self) -> std::io::Result<Box<dyn Socket>> {
        let socket = TcpStream::connect(&self.host)?;
        socket.set_read_timeout(Some(Duration::from_secs(10)))?;
        let Some(config) = &self.tls else {
            return Ok(Box::new(socket));
        };
        let name = self
            .host
            .rsplit_once(':')
            .map_or(self.host.as_str(), |(h, _)| h);
        let name = ServerName::try_from(name.to_string()).map_err(std::io::Error::other)?;
        let connection =
            rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
        Ok(Box::new(rustls::StreamOwned::new(connection, socket)))
    }
}

fn tls_config(cacert: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(cacert).expect("read --cacert") {
        roots
            .add(certificate.expect("a PEM certificate"))
            .expect("a usable CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

fn client(target: &Target, until: Instant, warmup: Duration) -> ClientResult {
    let mut result = ClientResult {
        frames: 0,
        bytes: 0,
        latencies_ms: Vec::new(),
        error: None,
    };
    let mut run = || -> std::io::Result<()> {
        let mut socket = target.connect()?;
        // HTTP/1.0: a close-delimited body, no chunked framing to undo.
        write!(
            socket,
            "GET {} HTTP/1.0\r\nUser-Agent: mjpeg-clients\r\n\r\n",
            target.path
        )?;
        socket.flush()?;
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
    let tls = arg_text(&args, "--cacert").map(|path| tls_config(&path));
    let targets: Vec<Target> = args[1..]
        .iter()
        .filter(|a| a.starts_with("http://") || a.starts_with("https://"))
        .map(|url| Target::parse(url, tls.as_ref()))
        .collect();
    assert!(
        !targets.is_empty(),
        "usage: mjpeg-clients http(s)://HOST:PORT/PATH [URL…] [--clients N] [--seconds S] [--warmup-ms M] [--cacert PEM]"
    );
    let clients = arg(&args, "--clients", 1);
    let seconds = arg(&args, "--seconds", 10);
    let warmup = Duration::from_millis(arg(&args, "--warmup-ms", 1000));

    let until = Instant::now() + warmup + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let target = targets[i as usize % targets.len()].clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || client(&target, until, warmup))
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

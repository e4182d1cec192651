// SPDX-License-Identifier: MPL-2.0

//! mjpeghttpsink over HTTPS: HTTP/2 and HTTP/1.1 by ALPN, read by curl over
//! real sockets, and the certificate and key checked at start.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use gst::prelude::*;

/// A self-signed certificate for 127.0.0.1 and its key, in a directory of
/// their own.
struct Certificate {
    dir: PathBuf,
}

impl Certificate {
    fn new(name: &str) -> Certificate {
        let dir = std::env::temp_dir().join(unique_topic(name));
        std::fs::create_dir_all(&dir).unwrap();
        let output = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-addext",
                // A CA certificate as a server's own is refused by rustls
                // clients (webpki), and by browsers without an exception.
                "basicConstraints=critical,CA:FALSE",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
            ])
            .current_dir(&dir)
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Certificate { dir }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    fn properties(&self) -> String {
        format!(
            "tls-certificate={} tls-key={}",
            self.cert().display(),
            self.key().display()
        )
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Two moving cameras served on one port over HTTPS, each at its path.
fn two_cameras(certificate: &Certificate) -> (gst::Pipeline, u16) {
    init();
    let port = free_port();
    let tls = certificate.properties();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! jpegenc ! mjpeghttpsink port={port} path=/cam1 {tls} \
         videotestsrc is-live=true pattern=snow ! video/x-raw,width=320,height=240,framerate=30/1 \
         ! jpegenc ! mjpeghttpsink port={port} path=/cam2 {tls}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    (pipeline, port)
}

/// What curl said of one transfer (`-w`), and the bytes it downloaded.
struct Transfer {
    http_version: String,
    new_connections: u32,
    local_port: u16,
    body: Vec<u8>,
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("http_version", &self.http_version)
            .field("new_connections", &self.new_connections)
            .field("local_port", &self.local_port)
            .field("bytes", &self.body.len())
            .field("jpeg_parts", &jpeg_parts(&self.body))
            .finish()
    }
}

/// Fetches `paths` in parallel for 3 s with curl, trusting only
/// `certificate`.
fn curl(certificate: &Certificate, port: u16, http: &str, paths: &[&str]) -> Vec<Transfer> {
    let dir = &certificate.dir;
    let mut command = Command::new("curl");
    command
        .args([
            http,
            "--parallel",
            "--silent",
            "--max-time",
            "3",
            "--cacert",
        ])
        .arg(certificate.cert())
        .args([
            "--write-out",
            "%{urlnum} %{http_version} %{num_connects} %{local_port}\\n",
        ]);
    for (i, path) in paths.iter().enumerate() {
        command
            .arg("--output")
            .arg(dir.join(format!("body{i}")))
            .arg(format!("https://127.0.0.1:{port}{path}"));
    }
    let output = command.output().expect("run curl");
    // The streams never end: curl stops them at --max-time (exit code 28).
    assert_eq!(
        output.status.code(),
        Some(28),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut transfers: Vec<(usize, Transfer)> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let urlnum: usize = fields[0].parse().unwrap();
            let body = read_body(dir, urlnum);
            (
                urlnum,
                Transfer {
                    http_version: fields[1].to_string(),
                    new_connections: fields[2].parse().unwrap(),
                    local_port: fields[3].parse().unwrap(),
                    body,
                },
            )
        })
        .collect();
    transfers.sort_by_key(|(urlnum, _)| *urlnum);
    assert_eq!(transfers.len(), paths.len());
    transfers.into_iter().map(|(_, t)| t).collect()
}

fn read_body(dir: &Path, urlnum: usize) -> Vec<u8> {
    std::fs::read(dir.join(format!("body{urlnum}"))).unwrap_or_default()
}

/// The number of whole JPEG parts in a multipart body.
fn jpeg_parts(body: &[u8]) -> usize {
    body.windows(2)
        .filter(|w| w == &[0xff, 0xd8])
        .count()
        .min(body.windows(2).filter(|w| w == &[0xff, 0xd9]).count())
}

#[test]
fn http2_carries_two_cameras_on_one_connection() {
    let certificate = Certificate::new("h2");
    let (pipeline, port) = two_cameras(&certificate);
    assert!(wait_until(Duration::from_secs(10), || Command::new("curl")
        .args(["--silent", "--fail", "--output", "/dev/null", "--cacert"])
        .arg(certificate.cert())
        .arg(format!(
            "https://127.0.0.1:{port}/snapshot.jpg?stream=/cam2"
        ))
        .status()
        .unwrap()
        .success()));

    let transfers = curl(&certificate, port, "--http2", &["/cam1", "/cam2"]);
    for transfer in &transfers {
        assert_eq!(transfer.http_version, "2", "{transfer:?}");
        // 3 s of a 30 fps stream.
        assert!(jpeg_parts(&transfer.body) >= 30, "{transfer:?}");
    }
    // One TCP connection for both: the second transfer opened none and
    // shares the first one's local port.
    assert_eq!(
        transfers
            .iter()
            .map(|t| t.new_connections)
            .collect::<Vec<_>>(),
        [1, 0]
    );
    assert_eq!(transfers[0].local_port, transfers[1].local_port);
    assert_ne!(transfers[0].body, transfers[1].body);
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn http11_over_tls_is_offered_too() {
    let certificate = Certificate::new("h1");
    let (pipeline, port) = two_cameras(&certificate);
    assert!(wait_until(Duration::from_secs(10), || Command::new("curl")
        .args(["--silent", "--fail", "--output", "/dev/null", "--cacert"])
        .arg(certificate.cert())
        .arg(format!("https://127.0.0.1:{port}/snapshot.jpg"))
        .status()
        .unwrap()
        .success()));
    let transfers = curl(&certificate, port, "--http1.1", &["/cam1"]);
    assert_eq!(transfers[0].http_version, "1.1");
    assert!(jpeg_parts(&transfers[0].body) >= 30, "{:?}", transfers[0]);
    // A plain HTTP request to the HTTPS port is refused at once, not left
    // hanging (curl's code 28 would be its own timeout).
    let asked = std::time::Instant::now();
    let plain = Command::new("curl")
        .args(["--silent", "--max-time", "10", "--output", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/snapshot.jpg"))
        .status()
        .unwrap();
    assert!(!plain.success());
    assert_ne!(plain.code(), Some(28));
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

/// The error a sink with `properties` posts at start.
fn start_error(properties: &str) -> String {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! jpegenc ! mjpeghttpsink port=0 {properties}"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    expect_error(run(&pipeline, Duration::from_secs(10)))
}

#[test]
fn missing_unreadable_or_mismatched_certificate_and_key_fail_at_start() {
    let certificate = Certificate::new("tls-errors");
    let other = Certificate::new("tls-other");
    let (cert, key) = (certificate.cert(), certificate.key());
    let missing = certificate.dir.join("missing.pem");
    let cases = [
        (
            format!("tls-certificate={}", cert.display()),
            vec!["needs both tls-certificate and tls-key".to_string()],
        ),
        (
            format!("tls-key={}", key.display()),
            vec!["needs both tls-certificate and tls-key".to_string()],
        ),
        (
            format!(
                "tls-certificate={} tls-key={}",
                missing.display(),
                key.display()
            ),
            vec![
                format!("tls-certificate {}", missing.display()),
                "No such file".into(),
            ],
        ),
        (
            format!(
                "tls-certificate={} tls-key={}",
                cert.display(),
                missing.display()
            ),
            vec![
                format!("tls-key {}", missing.display()),
                "No such file".into(),
            ],
        ),
        (
            format!(
                "tls-certificate={} tls-key={}",
                key.display(),
                key.display()
            ),
            vec![format!(
                "tls-certificate {}: no CERTIFICATE in the file",
                key.display()
            )],
        ),
        (
            format!(
                "tls-certificate={} tls-key={}",
                cert.display(),
                cert.display()
            ),
            vec![format!("tls-key {}: no PEM private key", cert.display())],
        ),
        (
            format!(
                "tls-certificate={} tls-key={}",
                cert.display(),
                other.key().display()
            ),
            vec![format!(
                "tls-key {} does not fit tls-certificate {}",
                other.key().display(),
                cert.display()
            )],
        ),
    ];
    for (properties, expected) in cases {
        let message = start_error(&properties);
        for text in expected {
            assert!(message.contains(&text), "{properties}: {message}");
        }
    }
}

#[test]
fn sinks_sharing_a_port_must_agree_on_tls() {
    init();
    let certificate = Certificate::new("tls-share");
    let port = free_port();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! jpegenc ! mjpeghttpsink port={port} path=/a {} \
         videotestsrc is-live=true ! jpegenc ! mjpeghttpsink port={port} path=/b",
        certificate.properties()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let message = expect_error(run(&pipeline, Duration::from_secs(10)));
    assert!(
        message.contains("other tls-certificate and tls-key settings"),
        "{message}"
    );
}

#[test]
fn an_http2_connection_that_asks_nothing_is_closed() {
    let certificate = Certificate::new("h2-silent");
    let (pipeline, port) = two_cameras(&certificate);
    // openssl s_client negotiates h2 and then sends nothing; with its input
    // held open it exits only when the server closes the connection.
    let opened = std::time::Instant::now();
    let mut client = Command::new("openssl")
        .args(["s_client", "-alpn", "h2", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let closed = wait_until(Duration::from_secs(20), || {
        client.try_wait().unwrap().is_some()
    });
    let after = opened.elapsed();
    let _ = client.kill();
    let output = client.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("ALPN protocol: h2"), "{text}");
    assert!(closed, "still open after {after:?}");
    // The 5 s a request head gets, not at once and not much later.
    assert!(
        (Duration::from_secs(4)..Duration::from_secs(10)).contains(&after),
        "{after:?}"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn sinks_naming_the_same_files_differently_share_a_port() {
    init();
    let certificate = Certificate::new("tls-same");
    let port = free_port();
    // The same files by a path relative to the working directory.
    let relative = |path: PathBuf| {
        let up = "../".repeat(std::env::current_dir().unwrap().components().count() - 1);
        format!("{up}{}", path.strip_prefix("/").unwrap().display())
    };
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true ! jpegenc ! mjpeghttpsink port={port} path=/a {} \
         videotestsrc is-live=true ! jpegenc ! mjpeghttpsink port={port} path=/b \
         tls-certificate={} tls-key={}",
        certificate.properties(),
        relative(certificate.cert()),
        relative(certificate.key()),
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for path in ["/a", "/b"] {
        assert!(
            wait_until(Duration::from_secs(10), || Command::new("curl")
                .args(["--silent", "--fail", "--output", "/dev/null", "--cacert"])
                .arg(certificate.cert())
                .arg(format!(
                    "https://127.0.0.1:{port}/snapshot.jpg?stream={path}"
                ))
                .status()
                .unwrap()
                .success()),
            "{path}"
        );
    }
    pipeline.set_state(gst::State::Null).unwrap();
}

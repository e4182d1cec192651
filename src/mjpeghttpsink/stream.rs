// SPDX-License-Identifier: MPL-2.0

//! One MJPEG stream (one `mjpeghttpsink`): the newest frame, assembled once
//! and shared by every client, the task that feeds one client, and what the
//! stream's requests are checked against (credentials, CORS origin).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gst::glib;
use gst::prelude::*;
use http_body_util::BodyExt;
use hyper::header::HeaderValue;
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, watch};

use super::CAT;
use super::conn::Abort;
use super::replay::{Gate, GateStats, Slot};
use super::signals::{ClientEvent, SignalEmitter};

macro_rules! boundary {
    () => {
        "gstkafkaframe"
    };
}

/// The multipart boundary. Unquoted in the Content-Type (WebKit wants it so).
pub const BOUNDARY: &str = boundary!();

/// The Content-Type of a stream response.
pub const STREAM_CONTENT_TYPE: &str = concat!("multipart/x-mixed-replace;boundary=", boundary!());

/// Chunks queued per client: one part is three chunks, so a client is never
/// more than about one frame behind what its socket accepted.
const CLIENT_QUEUE_CHUNKS: usize = 4;

/// A password or token. Its `Debug` output never shows it, and comparing
/// with it takes the same time wherever the given value differs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, given: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        // Compare as many bytes as the secret has whatever was given, so
        // that neither a prefix nor a length can be found by timing.
        let mut padded = vec![0u8; expected.len()];
        let common = given.len().min(expected.len());
        padded[..common].copy_from_slice(&given[..common]);
        let same_length = (given.len() as u64).ct_eq(&(expected.len() as u64));
        (expected.ct_eq(&padded) & same_length).into()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// What a request offers to prove it may see a stream: the decoded
/// `user:password` of a Basic `Authorization` header and the percent-decoded
/// `?token=`.
#[derive(Debug, Default)]
pub struct Credentials {
    pub basic: Option<Vec<u8>>,
    pub token: Option<Vec<u8>>,
}

/// Checks a `cors-origin` value: `*`, `null` or `scheme://host[:port]`, as a
/// browser sends it in `Origin`.
pub fn parse_cors_origin(origin: &str) -> Result<HeaderValue, String> {
    let invalid = || {
        format!(
            "cors-origin {origin:?} is not an origin: use *, or scheme://host[:port] without a path"
        )
    };
    if origin != "*" && origin != "null" {
        let (scheme, authority) = origin.split_once("://").ok_or_else(invalid)?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        let authority_ok = !authority.is_empty()
            && authority
                .chars()
                .all(|c| c.is_ascii_graphic() && !"/?#@,\\\"".contains(c));
        if !scheme_ok || !authority_ok {
            return Err(invalid());
        }
    }
    HeaderValue::from_str(origin).map_err(|_| invalid())
}

/// Settings of a stream that requests look at.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub path: String,
    pub max_clients: u32,
    pub max_connections: u32,
    pub max_fps: u32,
    pub keepalive: Duration,
    pub send_timeout: Duration,
    pub cors_origin: Option<HeaderValue>,
    pub auth: Option<Secret>,
    pub auth_token: Option<Secret>,
    /// The camera this stream shows, when it is one camera of a sink's
    /// input (a topic of many cameras).
    pub camera: Option<CameraOf>,
    /// Whether `?at=` replays the upstream kafkasrc's topic.
    pub replay: bool,
    pub max_replay_clients: u32,
}

/// A camera of a sink: its name and the path of the sink's own stream; the
/// camera's stream is at `<sink_path>/<name>`.
#[derive(Debug, Clone)]
pub struct CameraOf {
    pub sink_path: String,
    pub name: String,
}

/// One JPEG as it goes on the wire: part headers, the JPEG itself (the
/// buffer's memory, not a copy) and the boundary that ends the part.
#[derive(Debug)]
pub struct Frame {
    seq: u64,
    headers: Bytes,
    jpeg: Bytes,
}

impl Frame {
    pub fn new(seq: u64, jpeg: Bytes, captured: SystemTime) -> Frame {
        let since_epoch = captured.duration_since(UNIX_EPOCH).unwrap_or_default();
        let headers = format!(
            "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: {}.{:06}\r\nX-Frame-Seq: {seq}\r\n\r\n",
            jpeg.len(),
            since_epoch.as_secs(),
            since_epoch.subsec_micros()
        );
        Frame {
            seq,
            headers: Bytes::from(headers),
            jpeg,
        }
    }

    pub fn jpeg(&self) -> &Bytes {
        &self.jpeg
    }

    pub fn part(&self, last: bool) -> [Bytes; 3] {
        const TRAILER: &str = concat!("\r\n--", boundary!(), "\r\n");
        const CLOSING: &str = concat!("\r\n--", boundary!(), "--\r\n");
        [
            self.headers.clone(),
            self.jpeg.clone(),
            Bytes::from_static(if last { CLOSING } else { TRAILER }.as_bytes()),
        ]
    }
}

/// What the sink publishes to its clients.
#[derive(Debug, Clone)]
enum Published {
    Waiting,
    Frame(Arc<Frame>),
    /// EOS: clients get the last frame once more with the closing boundary.
    Eos(Option<Arc<Frame>>),
    /// The sink stopped: responses end at once.
    Stopped,
}

/// One client of a stream, as `/stats` lists it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientStats {
    pub address: String,
    pub user_agent: String,
    pub frames_sent: u64,
    pub frames_skipped: u64,
    pub bytes: u64,
}

/// A stream's statistics: the `stats` property, `/stats` and `/metrics` are
/// all made from this. `frames_sent`, `frames_skipped` and `bytes_sent` are
/// those of the connected clients; the `_total` ones count every client
/// since the sink started, so that they never go down.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamStats {
    pub path: String,
    /// The camera, for a stream of one camera of a sink's input, and the
    /// path of that sink's own stream.
    pub camera: Option<String>,
    pub camera_of: Option<String>,
    pub input_fps: f64,
    pub frames_in: u64,
    pub not_jpeg: u64,
    pub frames_sent: u64,
    pub frames_skipped: u64,
    pub bytes_sent: u64,
    pub clients_total: u64,
    pub frames_sent_total: u64,
    pub frames_skipped_total: u64,
    pub bytes_sent_total: u64,
    /// Seconds since the last frame arrived; none before the first.
    pub last_frame_age: Option<f64>,
    #[serde(flatten)]
    pub replay: GateStats,
    pub clients: Vec<ClientStats>,
}

#[derive(Debug, Default)]
struct Counters {
    clients: HashMap<u64, ClientStats>,
    frames_in: u64,
    not_jpeg: u64,
    fps: f64,
    last_arrival: Option<Instant>,
    clients_total: u64,
    frames_sent_total: u64,
    frames_skipped_total: u64,
    bytes_sent_total: u64,
}

impl Counters {
    fn frame_arrived(&mut self) {
        let now = Instant::now();
        if let Some(last) = self.last_arrival.replace(now) {
            let interval = now.duration_since(last).as_secs_f64();
            if interval > 0.0 {
                // Exponential average over roughly the last 15 frames.
                let fps = 1.0 / interval;
                self.fps = if self.fps == 0.0 {
                    fps
                } else {
                    self.fps + (fps - self.fps) / 15.0
                };
            }
        }
        self.frames_in += 1;
    }
}

/// Why a client's feed ended.
pub enum FeedEnd {
    /// The response is complete, or the client went away.
    Done,
    /// The client's socket accepted nothing for `send-timeout-ms`.
    Stalled,
}

pub struct Stream {
    config: StreamConfig,
    published: watch::Sender<Published>,
    counters: Mutex<Counters>,
    element: glib::WeakRef<gst::Element>,
    signals: Arc<SignalEmitter>,
    next_client: AtomicU64,
    replay_gate: Gate,
}

impl Stream {
    pub fn new(
        config: StreamConfig,
        element: &gst::Element,
        signals: Arc<SignalEmitter>,
    ) -> Stream {
        Stream {
            published: watch::Sender::new(Published::Waiting),
            counters: Mutex::new(Counters::default()),
            element: element.downgrade(),
            signals,
            next_client: AtomicU64::new(0),
            replay_gate: Gate::new(config.max_replay_clients),
            config,
        }
    }

    pub fn path(&self) -> &str {
        &self.config.path
    }

    pub fn camera(&self) -> Option<&CameraOf> {
        self.config.camera.as_ref()
    }

    pub fn send_timeout(&self) -> Duration {
        self.config.send_timeout
    }

    pub fn keepalive(&self) -> Duration {
        self.config.keepalive
    }

    pub fn max_connections(&self) -> u32 {
        self.config.max_connections
    }

    pub fn replay_enabled(&self) -> bool {
        self.config.replay
    }

    /// A slot for one more replay response, unless `max-replay-clients`
    /// are open.
    pub fn enter_replay(&self) -> Option<Slot> {
        self.replay_gate.enter()
    }

    /// Resolves once the sink stopped.
    pub async fn stopped(&self) {
        let mut published = self.published.subscribe();
        loop {
            if matches!(*published.borrow_and_update(), Published::Stopped) {
                return;
            }
            if published.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn cors_origin(&self) -> Option<&HeaderValue> {
        self.config.cors_origin.as_ref()
    }

    /// The sink this stream belongs to, for log lines.
    pub fn element(&self) -> Option<gst::Element> {
        self.element.upgrade()
    }

    /// Whether `credentials` open this stream: basic auth, or the token (for
    /// `<img>` tags, which cannot send headers). A stream without either
    /// setting is open to everyone.
    pub fn authorizes(&self, credentials: &Credentials) -> bool {
        let config = &self.config;
        if config.auth.is_none() && config.auth_token.is_none() {
            return true;
        }
        let token_ok = matches!(
            (&config.auth_token, &credentials.token),
            (Some(token), Some(given)) if token.matches(given)
        );
        let basic_ok = matches!(
            (&config.auth, &credentials.basic),
            (Some(auth), Some(given)) if auth.matches(given)
        );
        token_ok | basic_ok
    }

    pub fn publish(&self, frame: Frame) {
        self.counters.lock().unwrap().frame_arrived();
        self.published
            .send_replace(Published::Frame(Arc::new(frame)));
    }

    pub fn count_not_jpeg(&self) {
        self.counters.lock().unwrap().not_jpeg += 1;
    }

    /// Ends every response with the last frame and the closing boundary.
    pub fn end_of_stream(&self) {
        let last = self.latest_frame();
        self.published.send_replace(Published::Eos(last));
    }

    /// Ends every response at once.
    pub fn stop(&self) {
        self.published.send_replace(Published::Stopped);
    }

    pub fn latest_frame(&self) -> Option<Arc<Frame>> {
        match &*self.published.borrow() {
            Published::Frame(frame) | Published::Eos(Some(frame)) => Some(frame.clone()),
            _ => None,
        }
    }

    pub fn stats(&self) -> StreamStats {
        let counters = self.counters.lock().unwrap();
        let clients: Vec<ClientStats> = counters.clients.values().cloned().collect();
        StreamStats {
            path: self.config.path.clone(),
            camera: self.config.camera.as_ref().map(|c| c.name.clone()),
            camera_of: self.config.camera.as_ref().map(|c| c.sink_path.clone()),
            input_fps: (counters.fps * 100.0).round() / 100.0,
            frames_in: counters.frames_in,
            not_jpeg: counters.not_jpeg,
            frames_sent: clients.iter().map(|c| c.frames_sent).sum(),
            frames_skipped: clients.iter().map(|c| c.frames_skipped).sum(),
            bytes_sent: clients.iter().map(|c| c.bytes).sum(),
            clients_total: counters.clients_total,
            frames_sent_total: counters.frames_sent_total,
            frames_skipped_total: counters.frames_skipped_total,
            bytes_sent_total: counters.bytes_sent_total,
            last_frame_age: counters
                .last_arrival
                .map(|at| (at.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
            replay: self.replay_gate.stats(),
            clients,
        }
    }

    /// Registers a client and starts feeding it, or returns `None` when
    /// `max-clients` are connected. `abort` closes the client's connection
    /// when its socket stalls.
    pub fn open_client(
        self: &Arc<Self>,
        address: SocketAddr,
        user_agent: &str,
        abort: Arc<Abort>,
    ) -> Option<ResponseBody> {
        let mut counters = self.counters.lock().unwrap();
        if self.config.max_clients > 0 && counters.clients.len() >= self.config.max_clients as usize
        {
            return None;
        }
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        counters.clients_total += 1;
        counters.clients.insert(
            id,
            ClientStats {
                address: address.to_string(),
                user_agent: user_agent.to_string(),
                ..Default::default()
            },
        );
        drop(counters);
        self.signals.send(ClientEvent::Added {
            address: address.to_string(),
            user_agent: user_agent.to_string(),
        });
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE_CHUNKS);
        let stream = self.clone();
        tokio::spawn(async move {
            if let FeedEnd::Stalled = stream.feed(id, tx).await {
                if let Some(element) = stream.element() {
                    gst::debug!(
                        CAT,
                        obj = element,
                        "client {address} accepted nothing for {:?}: disconnecting it",
                        stream.config.send_timeout
                    );
                }
                abort.abort();
            }
            stream.remove_client(id);
        });
        Some(ChunkBody::boxed_body(rx))
    }

    fn remove_client(&self, id: u64) {
        let removed = self.counters.lock().unwrap().clients.remove(&id);
        if let Some(client) = removed {
            self.signals.send(ClientEvent::Removed {
                address: client.address,
            });
        }
    }

    fn count_sent(&self, id: u64, frame_bytes: usize, skipped: u64) {
        let mut counters = self.counters.lock().unwrap();
        counters.frames_sent_total += 1;
        counters.frames_skipped_total += skipped;
        counters.bytes_sent_total += frame_bytes as u64;
        if let Some(client) = counters.clients.get_mut(&id) {
            client.frames_sent += 1;
            client.frames_skipped += skipped;
            client.bytes += frame_bytes as u64;
        }
    }

    async fn feed(&self, id: u64, tx: mpsc::Sender<Bytes>) -> FeedEnd {
        let config = &self.config;
        let mut published = self.published.subscribe();
        let opening = Bytes::from(format!("--{BOUNDARY}\r\n"));
        if let Err(end) = send_all(&tx, [opening], config.send_timeout).await {
            return end;
        }
        let min_interval =
            (config.max_fps > 0).then(|| Duration::from_secs_f64(1.0 / config.max_fps as f64));
        let mut last_sent: Option<(u64, Instant)> = None;
        loop {
            let current = published.borrow_and_update().clone();
            match current {
                Published::Stopped => return FeedEnd::Done,
                Published::Eos(last) => {
                    let closing = match last {
                        Some(frame) => frame.part(true),
                        None => [
                            Bytes::from_static(
                                b"Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
                            ),
                            Bytes::new(),
                            Bytes::from(format!("\r\n--{BOUNDARY}--\r\n")),
                        ],
                    };
                    return match send_all(&tx, closing, config.send_timeout).await {
                        Ok(()) => FeedEnd::Done,
                        Err(end) => end,
                    };
                }
                Published::Waiting => (),
                Published::Frame(frame) => {
                    let is_new = last_sent.is_none_or(|(seq, _)| seq != frame.seq);
                    let skipped = match last_sent {
                        Some((seq, _)) => frame.seq.saturating_sub(seq).saturating_sub(1),
                        None => 0,
                    };
                    let idle = last_sent.is_some_and(|(_, at)| at.elapsed() >= config.keepalive);
                    if is_new || idle {
                        if let Err(end) =
                            send_all(&tx, frame.part(false), config.send_timeout).await
                        {
                            return end;
                        }
                        self.count_sent(id, frame.jpeg.len(), skipped);
                        last_sent = Some((frame.seq, Instant::now()));
                    }
                }
            }
            // Rate cap: the newest frame after the interval, never a backlog.
            if let (Some(interval), Some((_, at))) = (min_interval, last_sent) {
                let next = at + interval;
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => (),
                    _ = tx.closed() => return FeedEnd::Done,
                }
            }
            let keepalive = last_sent
                .map(|(_, at)| (at + config.keepalive).saturating_duration_since(Instant::now()))
                .unwrap_or(config.keepalive);
            tokio::select! {
                changed = published.changed() => if changed.is_err() { return FeedEnd::Done },
                _ = tokio::time::sleep(keepalive) => (),
                _ = tx.closed() => return FeedEnd::Done,
            }
        }
    }
}

/// The body of a stream response: chunks from the client's feed task.
pub struct ChunkBody(mpsc::Receiver<Bytes>);

impl ChunkBody {
    pub fn boxed_body(chunks: mpsc::Receiver<Bytes>) -> ResponseBody {
        ChunkBody(chunks).boxed()
    }
}

impl hyper::body::Body for ChunkBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(hyper::body::Frame::data(data))))
    }
}

pub type ResponseBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

pub fn full_body(data: impl Into<Bytes>) -> ResponseBody {
    http_body_util::Full::new(data.into()).boxed()
}

/// Queues `chunks`, each within `timeout`.
pub async fn send_all<const N: usize>(
    tx: &mpsc::Sender<Bytes>,
    chunks: [Bytes; N],
    timeout: Duration,
) -> Result<(), FeedEnd> {
    for chunk in chunks {
        match tokio::time::timeout(timeout, tx.send(chunk)).await {
            Ok(Ok(())) => (),
            // The response body was dropped: the client went away.
            Ok(Err(_)) => return Err(FeedEnd::Done),
            Err(_) => return Err(FeedEnd::Stalled),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_only_itself() {
        let secret = Secret::new("viewer:secret".into());
        assert!(secret.matches(b"viewer:secret"));
        for wrong in [
            &b""[..],
            b"viewer:secre",
            b"viewer:secret2",
            b"viewer:secreT",
            b"viewer:secret\0",
        ] {
            assert!(!secret.matches(wrong), "{wrong:?}");
        }
        assert_eq!(format!("{secret:?}"), "***");
        assert!(Secret::new(String::new()).matches(b""));
    }

    #[test]
    fn cors_origins_are_checked() {
        for good in [
            "*",
            "null",
            "https://dashboard.example",
            "http://127.0.0.1:8000",
            "http://[::1]:8000",
        ] {
            assert!(parse_cors_origin(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "dashboard.example",
            "https://",
            "https://a.example/",
            "https://a.example/path",
            "https://a.example, https://b.example",
            "https://a.example\r\nX-Injected: 1",
            "https://a.exämple",
            "1http://a.example",
        ] {
            assert!(parse_cors_origin(bad).is_err(), "{bad:?}");
        }
    }
}

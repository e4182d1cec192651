// SPDX-License-Identifier: MPL-2.0

//! One MJPEG stream (one `mjpeghttpsink`): the newest frame, assembled once
//! and shared by every client, and the task that feeds one client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gst::glib;
use gst::prelude::*;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, watch};

macro_rules! boundary {
    () => {
        "gstkafkaframe"
    };
}

/// The multipart boundary. Unquoted in the Content-Type (WebKit wants it so).
pub const BOUNDARY: &str = boundary!();

/// Chunks queued per client: one part is three chunks, so a client is never
/// more than about one frame behind what its socket accepted.
const CLIENT_QUEUE_CHUNKS: usize = 4;

/// Settings of a stream that requests look at.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub path: String,
    pub max_clients: u32,
    pub max_fps: u32,
    pub keepalive: Duration,
    pub send_timeout: Duration,
    pub cors_origin: Option<String>,
    pub auth: Option<String>,
    pub auth_token: Option<String>,
}

/// One JPEG as it goes on the wire: part headers, the JPEG itself (the
/// buffer's memory, not a copy) and the boundary that ends the part.
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    pub headers: Bytes,
    pub jpeg: Bytes,
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

    fn part(&self, last: bool) -> [Bytes; 3] {
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
pub enum Published {
    Waiting,
    Frame(std::sync::Arc<Frame>),
    /// EOS: clients get the last frame once more with the closing boundary.
    Eos(Option<std::sync::Arc<Frame>>),
    /// The sink stopped: responses end at once.
    Stopped,
}

#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    pub address: String,
    pub user_agent: String,
    pub frames_sent: u64,
    pub frames_skipped: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub struct InputStats {
    pub frames_in: u64,
    pub not_jpeg: u64,
    pub fps: f64,
    last_arrival: Option<Instant>,
}

impl InputStats {
    pub fn frame_arrived(&mut self) {
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

pub struct Stream {
    pub config: StreamConfig,
    pub published: watch::Sender<Published>,
    pub clients: Mutex<HashMap<u64, ClientStats>>,
    pub input: Mutex<InputStats>,
    pub element: glib::WeakRef<gst::Element>,
    next_client: AtomicU64,
}

impl Stream {
    pub fn new(config: StreamConfig, element: &gst::Element) -> Stream {
        Stream {
            config,
            published: watch::Sender::new(Published::Waiting),
            clients: Mutex::new(HashMap::new()),
            input: Mutex::new(InputStats::default()),
            element: element.downgrade(),
            next_client: AtomicU64::new(0),
        }
    }

    pub fn latest_frame(&self) -> Option<std::sync::Arc<Frame>> {
        match &*self.published.borrow() {
            Published::Frame(frame) | Published::Eos(Some(frame)) => Some(frame.clone()),
            _ => None,
        }
    }

    /// Registers a client, or `None` when `max-clients` are connected.
    pub fn add_client(&self, address: SocketAddr, user_agent: &str) -> Option<u64> {
        let mut clients = self.clients.lock().unwrap();
        if self.config.max_clients > 0 && clients.len() >= self.config.max_clients as usize {
            return None;
        }
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        clients.insert(
            id,
            ClientStats {
                address: address.to_string(),
                user_agent: user_agent.to_string(),
                ..Default::default()
            },
        );
        drop(clients);
        if let Some(element) = self.element.upgrade() {
            element.emit_by_name::<()>("client-added", &[&address.to_string(), &user_agent]);
        }
        Some(id)
    }

    fn remove_client(&self, id: u64) {
        let removed = self.clients.lock().unwrap().remove(&id);
        if let (Some(client), Some(element)) = (removed, self.element.upgrade()) {
            element.emit_by_name::<()>("client-removed", &[&client.address]);
        }
    }

    fn count_sent(&self, id: u64, frame_bytes: usize, skipped: u64) {
        if let Some(client) = self.clients.lock().unwrap().get_mut(&id) {
            client.frames_sent += 1;
            client.frames_skipped += skipped;
            client.bytes += frame_bytes as u64;
        }
    }
}

/// The body of a stream response: chunks from the client's feed task.
pub struct ChunkBody(mpsc::Receiver<Bytes>);

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

/// Starts feeding client `id` and returns its response body. The feed ends
/// when the client goes away, stalls past `send-timeout-ms`, or the stream
/// ends.
pub fn spawn_feed(stream: std::sync::Arc<Stream>, id: u64) -> ResponseBody {
    let (tx, rx) = mpsc::channel(CLIENT_QUEUE_CHUNKS);
    tokio::spawn(async move {
        feed(&stream, id, tx).await;
        stream.remove_client(id);
    });
    ChunkBody(rx).boxed()
}

async fn send_all(tx: &mpsc::Sender<Bytes>, chunks: [Bytes; 3], timeout: Duration) -> bool {
    for chunk in chunks {
        match tokio::time::timeout(timeout, tx.send(chunk)).await {
            Ok(Ok(())) => (),
            _ => return false,
        }
    }
    true
}

async fn feed(stream: &Stream, id: u64, tx: mpsc::Sender<Bytes>) {
    let config = &stream.config;
    let mut published = stream.published.subscribe();
    let opening = Bytes::from(format!("--{BOUNDARY}\r\n"));
    if tx.send(opening).await.is_err() {
        return;
    }
    let min_interval =
        (config.max_fps > 0).then(|| Duration::from_secs_f64(1.0 / config.max_fps as f64));
    let mut last_sent: Option<(u64, Instant)> = None;
    loop {
        let current = published.borrow_and_update().clone();
        match current {
            Published::Stopped => return,
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
                send_all(&tx, closing, config.send_timeout).await;
                return;
            }
            Published::Waiting => (),
            Published::Frame(frame) => {
                let is_new = last_sent.is_none_or(|(seq, _)| seq != frame.seq);
                let skipped = match last_sent {
                    Some((seq, _)) if frame.seq > seq + 1 => frame.seq - seq - 1,
                    _ => 0,
                };
                let idle = last_sent.is_some_and(|(_, at)| at.elapsed() >= config.keepalive);
                if is_new || idle {
                    if !send_all(&tx, frame.part(false), config.send_timeout).await {
                        gst::debug!(super::imp::CAT, "client {id} stalled or left");
                        return;
                    }
                    stream.count_sent(id, frame.jpeg.len(), skipped);
                    last_sent = Some((frame.seq, Instant::now()));
                }
            }
        }
        // Rate cap: the newest frame after the interval, never a backlog.
        if let (Some(interval), Some((_, at))) = (min_interval, last_sent) {
            let next = at + interval;
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => (),
                _ = tx.closed() => return,
            }
        }
        let keepalive = last_sent
            .map(|(_, at)| (at + config.keepalive).saturating_duration_since(Instant::now()))
            .unwrap_or(config.keepalive);
        tokio::select! {
            changed = published.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(keepalive) => (),
            _ = tx.closed() => return,
        }
    }
}

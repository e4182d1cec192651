// SPDX-License-Identifier: MPL-2.0

/**
 * SECTION:element-mjpeghttpsink
 *
 * Serves the newest JPEG to any number of browsers as
 * `multipart/x-mixed-replace` (MJPEG over HTTP), from an HTTP server running
 * inside the pipeline.
 *
 * Endpoints: the stream at `path` (default `/video_feed`), `/` (a page
 * showing every stream of the server), `/snapshot.jpg` (the newest frame;
 * `?stream=<path>` picks a stream), `/stats` (JSON: clients, frames sent and
 * skipped, input fps, connections) and `/metrics` (the same numbers, with
 * the age of the last frame, in Prometheus' text format, one sample per
 * stream labelled `stream="<path>"`; counters count every client since the
 * start). `HEAD` and `OPTIONS` are answered; CORS headers only when
 * `cors-origin` is set. Paths are matched percent-decoded.
 *
 * Every part carries `X-Timestamp` (the capture time in seconds since the
 * Unix epoch, from the buffer's reference timestamp meta as kafkasrc and
 * rtspsrc set it, else the time the frame arrived) and `X-Frame-Seq`.
 *
 * Each frame is assembled once and shared by every client without copying
 * the JPEG. A slow client gets fewer frames (latest-frame-wins), never a
 * backlog, and never slows the pipeline or other clients; one whose writes
 * stall past `send-timeout-ms` is dropped. When the input is idle the last
 * frame is resent every `keepalive-ms` so browsers paint it.
 *
 * A connection whose socket accepts nothing for `send-timeout-ms` is
 * closed (reset), whatever it asked for; at most `max-connections` are open
 * at once, and more are answered 503 and closed at once.
 *
 * Several sinks of one process may share an address and port with
 * different paths (a dashboard of cameras on one port). Each stream keeps
 * its own `auth`, `auth-token` and `cors-origin`; `/`, `/stats` and `/metrics` show only
 * the streams the request's credentials open (401 when none), and
 * `/snapshot.jpg` without `?stream=` the first of them.
 *
 * ## Replay
 * Fed by a `kafkasrc` (directly or through `queue`, `identity`,
 * `capsfilter`, `tee` or `jpegparse`, which pass the recorded bytes on
 * unchanged), the sink also serves the topic's history,
 * with the kafkasrc's topic, key and client settings (`config`,
 * `config-file`: SASL, TLS): `<path>?at=<time>[&speed=S]` replays from
 * the frame at or before the time (ISO 8601 with a zone, or milliseconds
 * since the epoch) at the recorded pace times S (0.25 to 8),
 * `/snapshot.jpg?at=<time>` is that one frame, and `/timeline` gives each
 * stream's retained range and gaps as JSON. A time outside the topic gives
 * the nearest end with `X-Replay-Clamped: start|end`; a bad parameter is a
 * 400 naming it. Each replay response reads with a Kafka consumer of its
 * own, at most `max-replay-clients` at once per stream (503 beyond); live
 * clients are not affected. JPEG records replay as they are; a topic
 * decoded before the sink (`kafkasrc ! h264parse ! openh264dec ! jpegenc
 * ! mjpeghttpsink`) replays through copies of those elements, from the
 * keyframe before the time asked; chunked frames replay whole.
 * `replay=false` turns it off; without a kafkasrc upstream, replay
 * requests are answered 501 with the reason.
 *
 * The server listens on 127.0.0.1 by default: set `address=0.0.0.0` to
 * expose the camera to the network, preferably with `auth`.
 *
 * Buffers from kafkasrc name their record's key (`GstKafkaRecordMeta`):
 * each key is also served as a camera of its own at `<path>/<key>` (the key
 * percent-encoded as one path segment), made on its first frame with this
 * sink's settings, and `/` becomes a wall of every camera with its name;
 * a tile whose camera sent nothing for 3 s says so. `max-cameras` bounds
 * how many (a warning names the cameras beyond; 0: none). Records that
 * kafkasink keyed by its own stream id (no `key` set) name no camera: that
 * id changes whenever the producer restarts.
 *
 * With `tls-certificate` and `tls-key` (PEM files) it serves HTTPS through
 * rustls, offering HTTP/2 and HTTP/1.1 by ALPN: over HTTP/2 a browser
 * carries every stream of a page on one connection, where HTTP/1.1 allows
 * it six per host. Sinks sharing a port must name the same files.
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 kafkasrc topic=cam1 ! mjpeghttpsink port=8080
 * gst-launch-1.0 kafkasrc topic=cams ! mjpeghttpsink tls-certificate=cert.pem tls-key=key.pem
 * gst-launch-1.0 videotestsrc is-live=true ! jpegenc ! mjpeghttpsink address=0.0.0.0 auth=viewer:secret auth-token=s3cr3t
 * curl -o then.jpg "http://127.0.0.1:8080/snapshot.jpg?at=2026-11-25T13:00:00Z"
 * ]|
 *
 * `auth` and `auth-token` read back as `***` once set, so that property
 * dumps, pipeline graphs and logs do not show them.
 *
 * ## Signals
 * `client-added (address, user-agent)` and `client-removed (address)`,
 * emitted from a thread of the sink's own (`mjpeghttpsink-signals`), in
 * order: a slow handler delays later signals, not the server (at most 1024
 * wait; beyond, signals are dropped with a warning).
 */
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::CAT;
use super::cameras::{Cameras, Outcome};
use super::server::{SERVER_WIDE, Server, ServerStats};
use super::signals::SignalEmitter;
use super::stream::{Frame, Secret, Stream, StreamConfig, StreamStats, parse_cors_origin};
use super::tls::TlsFiles;
use crate::capturetime;
use crate::recordmeta;
use crate::throttle::Throttle;

const DEFAULT_ADDRESS: &str = "127.0.0.1";
const DEFAULT_PORT: u32 = 8080;
const DEFAULT_PATH: &str = "/video_feed";
const DEFAULT_MAX_CLIENTS: u32 = 0;
const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
const DEFAULT_MAX_FPS: u32 = 0;
const DEFAULT_KEEPALIVE_MS: u32 = 1000;
const DEFAULT_SEND_TIMEOUT_MS: u32 = 5000;
/// Enough for a large wall; bounds what a topic of ever-new keys can make.
const DEFAULT_MAX_CAMERAS: u32 = 256;
const DEFAULT_REPLAY: bool = true;
/// Each replay response has a Kafka consumer and a thread of its own.
const DEFAULT_MAX_REPLAY_CLIENTS: u32 = 8;

#[derive(Debug, Clone)]
struct Settings {
    address: String,
    port: u32,
    path: String,
    max_clients: u32,
    max_connections: u32,
    max_fps: u32,
    keepalive_ms: u32,
    send_timeout_ms: u32,
    cors_origin: Option<String>,
    auth: Option<Secret>,
    auth_token: Option<Secret>,
    tls_certificate: Option<String>,
    tls_key: Option<String>,
    max_cameras: u32,
    replay: bool,
    max_replay_clients: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            address: DEFAULT_ADDRESS.into(),
            port: DEFAULT_PORT,
            path: DEFAULT_PATH.into(),
            max_clients: DEFAULT_MAX_CLIENTS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_fps: DEFAULT_MAX_FPS,
            keepalive_ms: DEFAULT_KEEPALIVE_MS,
            send_timeout_ms: DEFAULT_SEND_TIMEOUT_MS,
            cors_origin: None,
            auth: None,
            auth_token: None,
            tls_certificate: None,
            tls_key: None,
            max_cameras: DEFAULT_MAX_CAMERAS,
            replay: DEFAULT_REPLAY,
            max_replay_clients: DEFAULT_MAX_REPLAY_CLIENTS,
        }
    }
}

struct Started {
    server: Arc<Server>,
    stream: Arc<Stream>,
    cameras: Cameras,
    camera_warnings: Throttle,
    requested: SocketAddr,
    seq: u64,
    not_jpeg_warnings: Throttle,
}

#[derive(Default)]
enum State {
    #[default]
    Stopped,
    Started(Box<Started>),
}

#[derive(Default)]
pub struct MjpegHttpSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
}

/// How a secret property reads back once set.
const REDACTED: &str = "***";

/// A JPEG starts with SOI and ends with EOI (some encoders pad after it).
pub(super) fn looks_like_jpeg(data: &[u8]) -> bool {
    let end = data.len()
        - data
            .iter()
            .rev()
            .take_while(|b| **b == 0)
            .count()
            .min(data.len());
    data.len() >= 4 && data.starts_with(&[0xff, 0xd8]) && data[..end].ends_with(&[0xff, 0xd9])
}

impl MjpegHttpSink {
    fn publish(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let map = buffer.clone().into_mapped_buffer_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::ResourceError::Read, ("cannot map buffer"));
            gst::FlowError::Error
        })?;
        let mut state = self.state.lock().unwrap();
        let State::Started(started) = &mut *state else {
            return Err(gst::FlowError::Flushing);
        };
        if !looks_like_jpeg(map.as_slice()) {
            started.stream.count_not_jpeg();
            if let Some(held_back) = started.not_jpeg_warnings.allow() {
                drop(state);
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Format,
                    (
                        "skipped a buffer of {} bytes that is not a JPEG (no SOI/EOI markers); {held_back} more since the last warning",
                        map.len()
                    )
                );
            }
            return Ok(gst::FlowSuccess::Ok);
        }
        started.seq += 1;
        // Capture time when upstream knows it (kafkasrc, rtspsrc), else now.
        let captured = capturetime::capture_time(buffer)
            .map(|since_epoch| UNIX_EPOCH + since_epoch)
            .unwrap_or_else(SystemTime::now);
        let jpeg = Bytes::from_owner(map);
        let warning = self.publish_camera(started, buffer, &jpeg, captured);
        started
            .stream
            .publish(Frame::new(started.seq, jpeg, captured));
        drop(state);
        if let Some(warning) = warning {
            gst::element_imp_warning!(self, gst::ResourceError::Busy, ("{warning}"));
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Shows the frame on the stream of the camera its record names, if
    /// any; returns a warning to post when the camera cannot have one.
    fn publish_camera(
        &self,
        started: &mut Started,
        buffer: &gst::BufferRef,
        jpeg: &Bytes,
        captured: SystemTime,
    ) -> Option<String> {
        if started.cameras.disabled() {
            return None;
        }
        recordmeta::with(buffer, |record| {
            let camera = record.camera()?;
            let outcome =
                started
                    .cameras
                    .publish(self.obj().upcast_ref(), camera, jpeg.clone(), captured);
            match outcome {
                Outcome::Published => None,
                Outcome::Added(path) => {
                    gst::info!(CAT, imp = self, "camera {camera:?} at {path}");
                    None
                }
                Outcome::OverLimit => started.camera_warnings.allow().map(|held_back| {
                    format!(
                        "camera {camera:?} not served at a path of its own: max-cameras ({}) \
                         reached; {held_back} more frame(s) of such cameras since the last warning",
                        started.cameras.max()
                    )
                }),
                Outcome::PathTaken(path) => started.camera_warnings.allow().map(|held_back| {
                    format!(
                        "camera {camera:?} not served at {path}: another stream has that path; \
                         {held_back} more frame(s) of such cameras since the last warning"
                    )
                }),
            }
        })
        .flatten()
    }

    fn stats(&self) -> gst::Structure {
        let (stream, server) = match &*self.state.lock().unwrap() {
            State::Started(started) => (started.stream.stats(), started.server.stats()),
            State::Stopped => (StreamStats::default(), ServerStats::default()),
        };
        stats_structure(&stream, &server)
    }
}

/// The `stats` property: the numbers of `/stats` for this sink's stream.
fn stats_structure(stream: &StreamStats, server: &ServerStats) -> gst::Structure {
    gst::Structure::builder("mjpeghttpsink-stats")
        .field("clients", stream.clients.len() as u32)
        .field("frames-in", stream.frames_in)
        .field("not-jpeg", stream.not_jpeg)
        .field("input-fps", stream.input_fps)
        .field("frames-sent", stream.frames_sent)
        .field("frames-skipped", stream.frames_skipped)
        .field("bytes-sent", stream.bytes_sent)
        .field("connections", server.connections)
        .field("connections-refused", server.connections_refused)
        .field("replay-clients", stream.replay.replay_clients)
        .field("replay-clients-total", stream.replay.replay_clients_total)
        .field("replay-refused", stream.replay.replay_refused)
        .build()
}

#[glib::object_subclass]
impl ObjectSubclass for MjpegHttpSink {
    const NAME: &'static str = "GstMjpegHttpSink";
    type Type = super::MjpegHttpSink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for MjpegHttpSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("address")
                    .nick("Address")
                    .blurb("Address to listen on (0.0.0.0 exposes the stream to the network)")
                    .default_value(Some(DEFAULT_ADDRESS))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("port")
                    .nick("Port")
                    .blurb("TCP port to listen on (0: any free port, see bound-port)")
                    .maximum(65535)
                    .default_value(DEFAULT_PORT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("bound-port")
                    .nick("Bound port")
                    .blurb("The port the server listens on, once started")
                    .maximum(65535)
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("path")
                    .nick("Path")
                    .blurb("URL path of the MJPEG stream")
                    .default_value(Some(DEFAULT_PATH))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-clients")
                    .nick("Maximum clients")
                    .blurb("Stream clients served at once; more get 503 (0: unlimited)")
                    .default_value(DEFAULT_MAX_CLIENTS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-connections")
                    .nick("Maximum connections")
                    .blurb("TCP connections open at once (streams, snapshots, idle); more are answered 503 and closed at once, counted in stats (sinks sharing a port: the lowest applies)")
                    .minimum(1)
                    .default_value(DEFAULT_MAX_CONNECTIONS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-fps")
                    .nick("Maximum fps")
                    .blurb("Frames per second sent to each client at most (0: every frame)")
                    .maximum(1000)
                    .default_value(DEFAULT_MAX_FPS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("keepalive-ms")
                    .nick("Keepalive")
                    .blurb("Resend the last frame when the input is idle this long, so browsers paint it")
                    .minimum(10)
                    .default_value(DEFAULT_KEEPALIVE_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("send-timeout-ms")
                    .nick("Send timeout")
                    .blurb("Close a connection whose socket accepts nothing for this long")
                    .minimum(10)
                    .default_value(DEFAULT_SEND_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("cors-origin")
                    .nick("CORS origin")
                    .blurb("Origin allowed to read this stream (scheme://host[:port] or *) as Access-Control-Allow-Origin (unset: no CORS headers)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-cameras")
                    .nick("Maximum cameras")
                    .blurb("Cameras served each at <path>/<camera>, named by the key of the records kafkasrc made the buffers of; 0: none")
                    .default_value(DEFAULT_MAX_CAMERAS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("replay")
                    .nick("Replay")
                    .blurb("Answer ?at=<time> on the stream and /snapshot.jpg, and /timeline, from the topic of the upstream kafkasrc (JPEG records, or H.264 through copies of the decoder and encoder before the sink)")
                    .default_value(DEFAULT_REPLAY)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-replay-clients")
                    .nick("Maximum replay clients")
                    .blurb("Replay responses (each with its own Kafka consumer) open at once per stream; more get 503")
                    .minimum(1)
                    .default_value(DEFAULT_MAX_REPLAY_CLIENTS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("tls-certificate")
                    .nick("TLS certificate")
                    .blurb("PEM file of the certificate chain: serve HTTPS (HTTP/2 or HTTP/1.1 by ALPN) instead of HTTP; needs tls-key")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("tls-key")
                    .nick("TLS key")
                    .blurb("PEM file of the private key of tls-certificate")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("auth")
                    .nick("Basic auth")
                    .blurb("user:password required (HTTP basic auth) on every endpoint; reads back as *** once set")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("auth-token")
                    .nick("Auth token")
                    .blurb("Token accepted as ?token=… (percent-encoded) instead of basic auth, since an <img> cannot send headers; reads back as *** once set")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("Clients, frames in, non-JPEG buffers skipped, input fps, frames sent and skipped, bytes sent, connections open and refused, replay clients (open, total, refused)")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                glib::subclass::Signal::builder("client-added")
                    .param_types([String::static_type(), String::static_type()])
                    .build(),
                glib::subclass::Signal::builder("client-removed")
                    .param_types([String::static_type()])
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn constructed(&self) {
        self.parent_constructed();
        // Frames go out as they come; clients pace themselves.
        self.obj().set_sync(false);
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        match pspec.name() {
            "address" => {
                settings.address = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_ADDRESS.into())
            }
            "port" => settings.port = value.get().expect("type checked upstream"),
            "path" => {
                settings.path = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_PATH.into())
            }
            "max-clients" => settings.max_clients = value.get().expect("type checked upstream"),
            "max-connections" => {
                settings.max_connections = value.get().expect("type checked upstream")
            }
            "max-fps" => settings.max_fps = value.get().expect("type checked upstream"),
            "keepalive-ms" => settings.keepalive_ms = value.get().expect("type checked upstream"),
            "send-timeout-ms" => {
                settings.send_timeout_ms = value.get().expect("type checked upstream")
            }
            "cors-origin" => settings.cors_origin = value.get().expect("type checked upstream"),
            "tls-certificate" => {
                settings.tls_certificate = value.get().expect("type checked upstream")
            }
            "tls-key" => settings.tls_key = value.get().expect("type checked upstream"),
            "max-cameras" => settings.max_cameras = value.get().expect("type checked upstream"),
            "replay" => settings.replay = value.get().expect("type checked upstream"),
            "max-replay-clients" => {
                settings.max_replay_clients = value.get().expect("type checked upstream")
            }
            "auth" => {
                settings.auth = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .map(Secret::new)
            }
            "auth-token" => {
                settings.auth_token = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .map(Secret::new)
            }
            name => unimplemented!("property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "stats" => return self.stats().to_value(),
            "bound-port" => {
                let port = match &*self.state.lock().unwrap() {
                    State::Started(started) => started.server.local_addr().port() as u32,
                    State::Stopped => 0,
                };
                return port.to_value();
            }
            _ => (),
        }
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "address" => settings.address.to_value(),
            "port" => settings.port.to_value(),
            "path" => settings.path.to_value(),
            "max-clients" => settings.max_clients.to_value(),
            "max-connections" => settings.max_connections.to_value(),
            "max-fps" => settings.max_fps.to_value(),
            "keepalive-ms" => settings.keepalive_ms.to_value(),
            "send-timeout-ms" => settings.send_timeout_ms.to_value(),
            "cors-origin" => settings.cors_origin.to_value(),
            "tls-certificate" => settings.tls_certificate.to_value(),
            "tls-key" => settings.tls_key.to_value(),
            "max-cameras" => settings.max_cameras.to_value(),
            "replay" => settings.replay.to_value(),
            "max-replay-clients" => settings.max_replay_clients.to_value(),
            "auth" => settings.auth.as_ref().map(|_| REDACTED).to_value(),
            "auth-token" => settings.auth_token.as_ref().map(|_| REDACTED).to_value(),
            name => unimplemented!("property {name}"),
        }
    }
}

impl GstObjectImpl for MjpegHttpSink {}

impl ElementImpl for MjpegHttpSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "MJPEG HTTP Sink",
                "Sink/Network",
                "Serves the newest JPEG to any number of browsers as multipart/x-mixed-replace",
                "gst-kafka developers",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &gst::Caps::builder("image/jpeg").build(),
                )
                .expect("valid pad template"),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for MjpegHttpSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let ip: IpAddr = settings.address.parse().map_err(|_| {
            gst::error_msg!(
                gst::LibraryError::Settings,
                ("address {:?} is not an IP address", settings.address)
            )
        })?;
        if !settings.path.starts_with('/')
            || SERVER_WIDE.contains(&settings.path.as_str())
            || settings.path == "/snapshot.jpg"
        {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                (
                    "path {:?} must start with / and not be /, /stats, /metrics, /snapshot.jpg or /timeline",
                    settings.path
                )
            ));
        }
        if settings
            .auth
            .as_ref()
            .is_some_and(|auth| !auth.as_str().contains(':'))
        {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ("auth must be user:password")
            ));
        }
        let cors_origin = settings
            .cors_origin
            .as_deref()
            .map(parse_cors_origin)
            .transpose()
            .map_err(|reason| gst::error_msg!(gst::LibraryError::Settings, ("{reason}")))?;
        let tls = match (&settings.tls_certificate, &settings.tls_key) {
            (None, None) => None,
            // Absolute, so that sinks naming the same files differently share
            // a port; a missing file is told when it is read.
            (Some(certificate), Some(key)) => Some(TlsFiles {
                certificate: std::fs::canonicalize(certificate)
                    .unwrap_or_else(|_| certificate.into()),
                key: std::fs::canonicalize(key).unwrap_or_else(|_| key.into()),
            }),
            _ => {
                return Err(gst::error_msg!(
                    gst::LibraryError::Settings,
                    ("HTTPS needs both tls-certificate and tls-key")
                ));
            }
        };
        let requested = SocketAddr::new(ip, settings.port as u16);
        let config = StreamConfig {
            path: settings.path.clone(),
            max_clients: settings.max_clients,
            max_connections: settings.max_connections,
            max_fps: settings.max_fps,
            keepalive: Duration::from_millis(settings.keepalive_ms.into()),
            send_timeout: Duration::from_millis(settings.send_timeout_ms.into()),
            cors_origin,
            auth: settings.auth,
            auth_token: settings.auth_token,
            camera: None,
            replay: settings.replay,
            max_replay_clients: settings.max_replay_clients,
        };
        let signals = SignalEmitter::spawn(self.obj().upcast_ref()).map_err(|err| {
            gst::error_msg!(
                gst::ResourceError::Failed,
                ("cannot start the thread that emits client signals: {err}")
            )
        })?;
        let signals = Arc::new(signals);
        let stream = Arc::new(Stream::new(
            config.clone(),
            self.obj().upcast_ref(),
            signals.clone(),
        ));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = Server::attach(requested, stream.clone(), tls)
            .map_err(|reason| gst::error_msg!(gst::ResourceError::OpenWrite, ("{reason}")))?;
        gst::info!(
            CAT,
            imp = self,
            "serving {scheme}://{}{}",
            server.local_addr(),
            settings.path
        );
        let cameras = Cameras::new(
            server.clone(),
            config,
            signals,
            settings.max_cameras as usize,
        );
        *self.state.lock().unwrap() = State::Started(Box::new(Started {
            server,
            stream,
            cameras,
            camera_warnings: Throttle::default(),
            requested,
            seq: 0,
            not_jpeg_warnings: Throttle::default(),
        }));
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let State::Started(started) = std::mem::take(&mut *self.state.lock().unwrap()) {
            started.cameras.stop(started.requested);
            started.stream.stop();
            started.server.detach(&started.stream, started.requested);
        }
        Ok(())
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.publish(buffer)
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Eos(_) = event.view()
            && let State::Started(started) = &*self.state.lock().unwrap()
        {
            started.cameras.end_of_stream();
            started.stream.end_of_stream();
        }
        self.parent_event(event)
    }
}

// SPDX-License-Identifier: MPL-2.0

//! The HTTP server inside `mjpeghttpsink`: one per address and port, shared
//! by every sink of the process that serves there under its own path. Each
//! request is authorized, and given CORS headers, by the streams it is
//! about, never by whichever sink started the server.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::CAT;
use super::conn::{Abort, ClientSocket};
use super::metrics;
use super::nosigpipe::NoSigPipe;
use super::replay;
use super::stream::{
    Credentials, ResponseBody, STREAM_CONTENT_TYPE, Stream, StreamStats, full_body,
};
use super::tls::{self, TlsFiles};
use crate::runtime::RUNTIME;

/// A client must send its request headers, or finish its TLS handshake,
/// within this time (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2: pings an idle connection this often, and closes it when a ping
/// is not answered within the same time (a peer gone without a FIN).
const H2_PING_INTERVAL: Duration = Duration::from_secs(10);
/// HTTP/2: streams one connection may have open; each stream's clients are
/// bounded by `max-clients` as over HTTP/1.1.
const H2_MAX_STREAMS: u32 = 100;
/// How long stopping waits for connections to close.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);
/// Request heads larger than this are refused.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// What a connection beyond `max-connections` gets before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\n\
    Content-Type: text/plain\r\nContent-Length: 17\r\nConnection: close\r\n\r\ntoo many clients\n";
/// Characters of a token kept as they are when it is put back into a URL.
const TOKEN_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Pages about every stream of the server; no stream may have these paths.
pub const SERVER_WIDE: [&str; 4] = ["/", "/stats", "/metrics", "/timeline"];

/// Characters of a stream's path kept as they are in the page's links.
const PATH_KEEP: &AsciiSet = &TOKEN_KEEP.remove(b'/');

/// Connection counts of one server, shared by its sinks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerStats {
    /// TCP connections open now.
    pub connections: u64,
    /// Connections closed at once because `max-connections` were open.
    pub connections_refused: u64,
}

#[derive(Debug, Default)]
struct Connections {
    open: AtomicUsize,
    refused: AtomicU64,
}

/// Counts a connection as open until dropped, with its task.
struct OpenConnection(Arc<Connections>);

impl OpenConnection {
    fn new(connections: &Arc<Connections>) -> OpenConnection {
        connections.open.fetch_add(1, Ordering::AcqRel);
        OpenConnection(connections.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A server's HTTPS: the files its sinks named, and the acceptor made of them.
struct Tls {
    files: TlsFiles,
    acceptor: TlsAcceptor,
}

pub struct Server {
    local_addr: SocketAddr,
    tls: Option<Tls>,
    streams: Mutex<Vec<Arc<Stream>>>,
    connections: Arc<Connections>,
    tasks: Mutex<HashMap<u64, JoinHandle<()>>>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

/// Servers by the address they were asked for (port 0 is never shared).
static SERVERS: LazyLock<Mutex<HashMap<SocketAddr, Weak<Server>>>> =
    LazyLock::new(Default::default);

impl Server {
    /// Adds `stream` to the server at `addr`, starting it (over HTTPS with
    /// `tls`) if needed.
    pub fn attach(
        addr: SocketAddr,
        stream: Arc<Stream>,
        tls: Option<TlsFiles>,
    ) -> Result<Arc<Server>, String> {
        let mut servers = SERVERS.lock().unwrap();
        let existing = (addr.port() != 0)
            .then(|| servers.get(&addr).and_then(Weak::upgrade))
            .flatten();
        let server = match existing {
            Some(server) => {
                if server.tls.as_ref().map(|t| &t.files) != tls.as_ref() {
                    return Err(format!(
                        "{addr} is already served by another mjpeghttpsink with other \
                         tls-certificate and tls-key settings"
                    ));
                }
                server
            }
            None => {
                let tls = match tls {
                    Some(files) => Some(Tls {
                        acceptor: TlsAcceptor::from(files.server_config()?),
                        files,
                    }),
                    None => None,
                };
                let server = Server::bind(addr, tls)?;
                if addr.port() != 0 {
                    servers.insert(addr, Arc::downgrade(&server));
                }
                server
            }
        };
        server.add(stream)?;
        Ok(server)
    }

    /// Serves `stream` too, unless its path is taken.
    pub fn add(&self, stream: Arc<Stream>) -> Result<(), String> {
        let mut streams = self.streams.lock().unwrap();
        if streams.iter().any(|s| s.path() == stream.path()) {
            return Err(format!(
                "path {} is already served on {} by another stream",
                stream.path(),
                self.local_addr
            ));
        }
        streams.push(stream);
        Ok(())
    }

    /// Removes `stream`; the last stream out shuts the server down, closing
    /// every connection and freeing the port.
    pub fn detach(self: &Arc<Self>, stream: &Arc<Stream>, requested: SocketAddr) {
        let mut servers = SERVERS.lock().unwrap();
        let mut streams = self.streams.lock().unwrap();
        streams.retain(|s| !Arc::ptr_eq(s, stream));
        if !streams.is_empty() {
            return;
        }
        drop(streams);
        if requested.port() != 0 {
            servers.remove(&requested);
        }
        let mut tasks: Vec<JoinHandle<()>> =
            self.accept.lock().unwrap().take().into_iter().collect();
        tasks.extend(self.tasks.lock().unwrap().drain().map(|(_, task)| task));
        for task in &tasks {
            task.abort();
        }
        drop(servers);
        // Wait for the aborted tasks to drop their sockets, so that the port
        // is free when the state change returns.
        if tokio::runtime::Handle::try_current().is_err() {
            RUNTIME.block_on(async {
                let _ = tokio::time::timeout(SHUTDOWN_TIMEOUT, async {
                    for task in tasks {
                        let _ = task.await;
                    }
                })
                .await;
            });
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> ServerStats {
        ServerStats {
            connections: self.connections.open.load(Ordering::Acquire) as u64,
            connections_refused: self.connections.refused.load(Ordering::Acquire),
        }
    }

    fn bind(addr: SocketAddr, tls: Option<Tls>) -> Result<Arc<Server>, String> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
        let local_addr = listener.local_addr().map_err(|err| err.to_string())?;
        let server = Arc::new(Server {
            local_addr,
            tls,
            streams: Mutex::new(Vec::new()),
            connections: Arc::default(),
            tasks: Mutex::new(HashMap::new()),
            accept: Mutex::new(None),
        });
        let listener = {
            let _guard = RUNTIME.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|err| err.to_string())?
        };
        let weak = Arc::downgrade(&server);
        let accept = RUNTIME.spawn(accept_loop(listener, weak));
        *server.accept.lock().unwrap() = Some(accept);
        Ok(server)
    }

    fn streams(&self) -> Vec<Arc<Stream>> {
        self.streams.lock().unwrap().clone()
    }

    /// The lowest `max-connections` of the sinks sharing the server, and
    /// the highest `send-timeout-ms` (no sink's clients are cut off sooner
    /// than it asks; each stream enforces its own on its clients).
    fn limits(&self) -> (usize, Duration) {
        let streams = self.streams.lock().unwrap();
        let max_connections = streams
            .iter()
            .map(|s| s.max_connections() as usize)
            .min()
            .unwrap_or(0);
        let write_timeout = streams
            .iter()
            .map(|s| s.send_timeout())
            .max()
            .unwrap_or_default();
        (max_connections, write_timeout)
    }

    /// Logs on every sink of the server, since all of them are affected.
    fn log_each(&self, level: gst::DebugLevel, message: std::fmt::Arguments) {
        for stream in self.streams() {
            if let Some(element) = stream.element() {
                gst::log_with_level!(CAT, level, obj = element, "{message}");
            }
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, server: Weak<Server>) {
    let mut next_task = 0u64;
    loop {
        let accepted = listener.accept().await;
        let Some(owner) = server.upgrade() else {
            return;
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off, keep serving.
                owner.log_each(
                    gst::DebugLevel::Warning,
                    format_args!("accept failed: {err}"),
                );
                drop(owner);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (max_connections, write_timeout) = owner.limits();
        if owner.connections.open.load(Ordering::Acquire) >= max_connections {
            owner.connections.refused.fetch_add(1, Ordering::AcqRel);
            owner.log_each(
                gst::DebugLevel::Debug,
                format_args!("refused {peer}: {max_connections} connections open"),
            );
            // Best effort and without waiting: a full server spends no task
            // on a connection it refuses (an HTTPS client just sees it close).
            if owner.tls.is_none() {
                let _ = socket.try_write(REFUSED);
            }
            continue;
        }
        let _ = socket.set_nodelay(true);
        let open = OpenConnection::new(&owner.connections);
        let id = next_task;
        next_task += 1;
        let acceptor = owner.tls.as_ref().map(|tls| tls.acceptor.clone());
        let task = tokio::spawn(serve(
            socket,
            acceptor,
            peer,
            server.clone(),
            write_timeout,
            open,
        ));
        let mut tasks = owner.tasks.lock().unwrap();
        tasks.retain(|_, handle| !handle.is_finished());
        tasks.insert(id, task);
    }
}

async fn serve(
    socket: tokio::net::TcpStream,
    acceptor: Option<TlsAcceptor>,
    peer: SocketAddr,
    server: Weak<Server>,
    write_timeout: Duration,
    _open: OpenConnection,
) {
    let abort = Arc::new(Abort::default());
    let socket = ClientSocket::new(NoSigPipe(socket), write_timeout, abort.clone());
    let Some(acceptor) = acceptor else {
        serve_http(socket, false, peer, server, abort).await;
        return;
    };
    let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(socket)).await;
    match handshake {
        Ok(Ok(socket)) => {
            let h2 = socket.get_ref().1.alpn_protocol() == Some(tls::H2);
            serve_http(socket, h2, peer, server, abort).await;
        }
        Ok(Err(err)) => log_peer(&server, format_args!("TLS handshake with {peer}: {err}")),
        Err(_) => log_peer(
            &server,
            format_args!("TLS handshake with {peer}: none within {HEADER_READ_TIMEOUT:?}"),
        ),
    }
}

fn log_peer(server: &Weak<Server>, message: std::fmt::Arguments) {
    if let Some(server) = server.upgrade() {
        server.log_each(gst::DebugLevel::Debug, message);
    }
}

/// Answers the requests of one connection, over HTTP/2 or HTTP/1.1.
async fn serve_http<I>(io: I, h2: bool, peer: SocketAddr, server: Weak<Server>, abort: Arc<Abort>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let for_requests = abort.clone();
    let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asked_by_request = asked.clone();
    let service = hyper::service::service_fn(move |request| {
        asked_by_request.store(true, Ordering::Release);
        let server = server.upgrade();
        let abort = for_requests.clone();
        async move {
            Ok::<_, std::convert::Infallible>(match server {
                Some(server) => route(&server, request, peer, abort).await,
                None => plain(StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
            })
        }
    });
    let io = TokioIo::new(io);
    // Dropping the connection closes the socket (with a reset once aborted).
    if h2 {
        let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_REQUEST_HEAD as u32)
            .max_concurrent_streams(H2_MAX_STREAMS)
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_INTERVAL)
            .serve_connection(io, service);
        // HTTP/2 has no header read timeout: a connection that asks nothing
        // within the time a request head gets is closed the same way.
        let silent = async {
            tokio::time::sleep(HEADER_READ_TIMEOUT).await;
            if asked.load(Ordering::Acquire) {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = connection => (),
            _ = abort.requested() => (),
            _ = silent => (),
        }
    } else {
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(MAX_REQUEST_HEAD.max(8192))
            .serve_connection(io, service);
        tokio::select! {
            _ = connection => (),
            _ = abort.requested() => (),
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Response<ResponseBody> {
    let mut response = Response::new(full_body(Bytes::copy_from_slice(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn no_store(response: &mut Response<ResponseBody>) {
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(
            "no-store, no-cache, must-revalidate, proxy-revalidate, max-age=0",
        ),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::EXPIRES, HeaderValue::from_static("0"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// A query parameter, percent-decoded.
fn query_param(request: &Request<Incoming>, name: &str) -> Option<Vec<u8>> {
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .map(|value| percent_decode_str(value).collect())
}

fn credentials(request: &Request<Incoming>) -> Credentials {
    let basic = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        // The scheme is case-insensitive (RFC 9110, 11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        });
    Credentials {
        basic,
        token: query_param(request, "token"),
    }
}

fn unauthorized() -> Response<ResponseBody> {
    let mut response = plain(StatusCode::UNAUTHORIZED, "credentials required\n");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"mjpeghttpsink\""),
    );
    response
}

/// Adds CORS headers allowing the request's `Origin` when one of `streams`
/// allows it. Without an `Origin` (not a browser), and when `single` and
/// the streams allow just one origin, that origin is named.
fn with_cors(
    mut response: Response<ResponseBody>,
    request_origin: Option<&HeaderValue>,
    streams: &[Arc<Stream>],
    single: bool,
) -> Response<ResponseBody> {
    let mut allowed: Vec<&HeaderValue> = streams.iter().filter_map(|s| s.cors_origin()).collect();
    allowed.dedup();
    let origin = match request_origin {
        Some(origin) if allowed.contains(&origin) => Some(origin.clone()),
        Some(_) if allowed.iter().any(|o| *o == "*") => Some(HeaderValue::from_static("*")),
        None if single && allowed.len() == 1 => Some(allowed[0].clone()),
        _ => None,
    };
    let headers = response.headers_mut();
    if !allowed.is_empty() {
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization"),
        );
    }
    response
}

fn allow_methods(mut response: Response<ResponseBody>) -> Response<ResponseBody> {
    response.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    response
}

async fn route(
    server: &Server,
    request: Request<Incoming>,
    peer: SocketAddr,
    abort: Arc<Abort>,
) -> Response<ResponseBody> {
    // Paths are compared decoded: a stream's path may hold characters a
    // URL must escape (a camera's key).
    let Ok(path) = percent_decode_str(request.uri().path()).decode_utf8() else {
        return plain(StatusCode::NOT_FOUND, "no such stream or page\n");
    };
    let path = path.into_owned();
    let request_origin = request.headers().get(header::ORIGIN).cloned();
    let all = server.streams();
    // The streams this request is about.
    let server_wide = SERVER_WIDE.contains(&path.as_str());
    let targets: Vec<Arc<Stream>> = match path.as_str() {
        _ if server_wide => all.clone(),
        "/snapshot.jpg" => match query_param(&request, "stream") {
            Some(wanted) => all
                .iter()
                .filter(|s| s.path().as_bytes() == wanted)
                .cloned()
                .collect(),
            None => all.clone(),
        },
        other => all.iter().filter(|s| s.path() == other).cloned().collect(),
    };
    if targets.is_empty() {
        return plain(StatusCode::NOT_FOUND, "no such stream or page\n");
    }
    let method = request.method().clone();
    if method == Method::OPTIONS {
        // A preflight carries no credentials: allow only an origin some
        // stream allows, naming none.
        let mut response = allow_methods(plain(StatusCode::NO_CONTENT, ""));
        *response.body_mut() = full_body(Bytes::new());
        return with_cors(response, request_origin.as_ref(), &targets, false);
    }
    if method != Method::GET && method != Method::HEAD {
        let response = allow_methods(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET, HEAD and OPTIONS\n",
        ));
        return with_cors(response, request_origin.as_ref(), &targets, false);
    }
    let credentials = credentials(&request);
    let visible: Vec<Arc<Stream>> = targets
        .iter()
        .filter(|s| s.authorizes(&credentials))
        .cloned()
        .collect();
    if visible.is_empty() {
        // Only a single stream's own origin may read its 401.
        return with_cors(
            unauthorized(),
            request_origin.as_ref(),
            &targets,
            !server_wide,
        );
    }
    let head = method == Method::HEAD;
    let mut response = match (path.as_str(), replay_params(&request)) {
        ("/", _) => index(&visible, credentials.token.as_deref()),
        ("/stats", _) => stats_json(server, &visible),
        ("/metrics", _) => metrics_text(server, &visible),
        ("/timeline", _) => timeline_json(&visible).await,
        (_, Some(Err(reason))) => plain(StatusCode::BAD_REQUEST, &format!("{reason}\n")),
        ("/snapshot.jpg", None) => snapshot(&visible[0]),
        ("/snapshot.jpg", Some(Ok(params))) => replay_snapshot(&visible[0], params).await,
        (_, None) => open_stream(&visible[0], &request, peer, head, abort),
        (_, Some(Ok(params))) if params.after => plain(
            StatusCode::BAD_REQUEST,
            "after: only /snapshot.jpg takes it; a stream takes at\n",
        ),
        (_, Some(Ok(params))) => replay_stream(&visible[0], params, head, abort).await,
    };
    if head {
        *response.body_mut() = full_body(Bytes::new());
    }
    let scope = if server_wide { &visible } else { &visible[..1] };
    with_cors(response, request_origin.as_ref(), scope, true)
}

/// `at` and `speed` of a replay request: none without `at`.
#[derive(Debug, Clone, Copy)]
struct ReplayParams {
    at_ms: i64,
    speed: f64,
    /// `after=` instead of `at=`: the first frame after the time.
    after: bool,
}

fn replay_params(request: &Request<Incoming>) -> Option<Result<ReplayParams, String>> {
    let text = |name: &str, value: Vec<u8>| {
        String::from_utf8(value).map_err(|_| format!("{name}: not UTF-8"))
    };
    let speed = query_param(request, "speed");
    let (name, at, after) = match (query_param(request, "at"), query_param(request, "after")) {
        (Some(_), Some(_)) => return Some(Err("at and after: give one of them".into())),
        (Some(at), None) => ("at", at, false),
        (None, Some(after)) => ("after", after, true),
        (None, None) => {
            return speed.map(|_| Err("speed: replays need at=<time> too".into()));
        }
    };
    let parse = || {
        let at_ms = replay::parse_time(name, &text(name, at)?)?;
        let speed = match speed {
            Some(speed) => replay::parse_speed(&text("speed", speed)?)?,
            None => 1.0,
        };
        Ok(ReplayParams {
            at_ms,
            speed,
            after,
        })
    };
    Some(parse())
}

/// What replay reads for `stream`, or a 501 saying why it cannot.
fn replay_source(stream: &Stream) -> Result<replay::Source, String> {
    if !stream.replay_enabled() {
        return Err("replay unavailable: turned off on this stream (replay=false)".into());
    }
    let element = stream
        .element()
        .ok_or("replay unavailable: the sink is gone")?;
    replay::source(&element, stream.camera().map(|camera| camera.name.as_str()))
}

fn unavailable_response(reason: &str) -> Response<ResponseBody> {
    plain(StatusCode::NOT_IMPLEMENTED, &format!("{reason}\n"))
}

fn too_many_replays() -> Response<ResponseBody> {
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many replay clients (max-replay-clients)\n",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

fn find_error_response(error: &replay::FindError) -> Response<ResponseBody> {
    let status = match error {
        replay::FindError::Empty | replay::FindError::NoKeyframe { .. } => StatusCode::NOT_FOUND,
        replay::FindError::Kafka(_) => StatusCode::BAD_GATEWAY,
        replay::FindError::Decode(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(status, &format!("{error}\n"))
}

/// `X-Timestamp` of a record timestamp, as parts carry it.
fn timestamp_value(ms: i64) -> HeaderValue {
    let text = format!("{}.{:03}000", ms.div_euclid(1000), ms.rem_euclid(1000));
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("0"))
}

fn mark_replay(
    response: &mut Response<ResponseBody>,
    name: &'static str,
    mark: &replay::Mark,
    clamp: Option<replay::Clamp>,
) {
    let headers = response.headers_mut();
    headers.insert(name, timestamp_value(mark.timestamp_ms));
    if let Some(clamp) = clamp {
        headers.insert("x-replay-clamped", HeaderValue::from_static(clamp.as_str()));
    }
}

async fn replay_snapshot(stream: &Arc<Stream>, params: ReplayParams) -> Response<ResponseBody> {
    let source = match replay_source(stream) {
        Ok(source) => source,
        Err(reason) => return unavailable_response(&reason),
    };
    let Some(slot) = stream.enter_replay() else {
        return too_many_replays();
    };
    let found = replay::snapshot(source, params.at_ms, params.after, slot).await;
    let found = match found {
        Ok(found) => found,
        Err(error) => return find_error_response(&error),
    };
    let mut response = Response::new(full_body(found.jpeg.clone()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    mark_replay(&mut response, "x-timestamp", &found.mark, found.clamp);
    no_store(&mut response);
    response
}

async fn replay_stream(
    stream: &Arc<Stream>,
    params: ReplayParams,
    head: bool,
    abort: Arc<Abort>,
) -> Response<ResponseBody> {
    let source = match replay_source(stream) {
        Ok(source) => source,
        Err(reason) => return unavailable_response(&reason),
    };
    let mut response = if head {
        Response::new(full_body(Bytes::new()))
    } else {
        let Some(slot) = stream.enter_replay() else {
            return too_many_replays();
        };
        let started = replay::start_replay(
            stream.clone(),
            source,
            params.at_ms,
            params.speed,
            slot,
            move || abort.abort(),
        )
        .await;
        match started {
            Ok((mark, clamp, body)) => {
                let mut response = Response::new(body);
                mark_replay(&mut response, "x-replay-from", &mark, clamp);
                response
            }
            Err(error) => return find_error_response(&error),
        }
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(STREAM_CONTENT_TYPE),
    );
    no_store(&mut response);
    response
}

/// `/timeline`: the retained range and gaps of each stream the request may
/// see (see replay.rs for how they are found).
async fn timeline_json(streams: &[Arc<Stream>]) -> Response<ResponseBody> {
    let mut entries = Vec::with_capacity(streams.len());
    for stream in streams {
        let path = stream.path().to_string();
        entries.push(match replay_source(stream) {
            Ok(source) => replay::timeline(path, source).await,
            Err(reason) => replay::unavailable(path, reason),
        });
    }
    json_response(&serde_json::json!({ "streams": entries }))
}

/// `value` as a JSON document on a line, never cached.
fn json_response(value: &impl serde::Serialize) -> Response<ResponseBody> {
    let mut json = serde_json::to_vec(value).unwrap_or_default();
    json.push(b'\n');
    let mut response = Response::new(full_body(json));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(&mut response);
    response
}

fn open_stream(
    stream: &Arc<Stream>,
    request: &Request<Incoming>,
    peer: SocketAddr,
    head: bool,
    abort: Arc<Abort>,
) -> Response<ResponseBody> {
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let body = if head {
        full_body(Bytes::new())
    } else {
        let Some(body) = stream.open_client(peer, &user_agent, abort) else {
            let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "too many clients\n");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return response;
        };
        body
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(STREAM_CONTENT_TYPE),
    );
    no_store(&mut response);
    response
}

fn snapshot(stream: &Stream) -> Response<ResponseBody> {
    let Some(frame) = stream.latest_frame() else {
        let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "no frame yet\n");
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let mut response = Response::new(full_body(frame.jpeg().clone()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    no_store(&mut response);
    response
}

/// The page: a wall of every stream the request may see, each camera of a
/// sink (see cameras.rs) in place of that sink's mixed stream. Without
/// scripting it still shows every picture; the script enlarges a tile on
/// click and marks the tiles whose camera stopped sending.
fn index(streams: &[Arc<Stream>], token: Option<&[u8]>) -> Response<ResponseBody> {
    let suffix = token
        .map(|t| {
            let encoded: String = percent_encode(t, TOKEN_KEEP).collect();
            format!("?token={encoded}")
        })
        .unwrap_or_default();
    let has_cameras = |sink: &Stream| {
        streams
            .iter()
            .any(|s| s.camera().is_some_and(|c| c.sink_path == sink.path()))
    };
    let tiles: Vec<&Arc<Stream>> = streams
        .iter()
        .filter(|s| s.camera().is_some() || !has_cameras(s))
        .collect();
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>gst-kafka: {} camera(s)</title><style>{WALL_CSS}{TRANSPORT_CSS}</style></head><body>\n\
         <header><b>gst-kafka</b> <span>{} camera(s)</span>\
         <span id=\"hint\" hidden>This page is served over HTTP/1.1: browsers show at most six \
         streams per host. Serve it over HTTPS (tls-certificate, tls-key) for HTTP/2 and every \
         camera.</span></header>\n<main id=\"wall\">\n",
        tiles.len(),
        tiles.len()
    );
    for stream in &tiles {
        let (name, url) = match stream.camera() {
            // The name is one path segment, '/' included.
            Some(camera) => (
                html_escape(&camera.name),
                format!(
                    "{}/{}",
                    percent_encode(camera.sink_path.as_bytes(), PATH_KEEP),
                    percent_encode(camera.name.as_bytes(), TOKEN_KEEP)
                ),
            ),
            None => (
                html_escape(stream.path()),
                percent_encode(stream.path().as_bytes(), PATH_KEEP).collect(),
            ),
        };
        let path = html_escape(stream.path());
        let _ = writeln!(
            html,
            "<figure class=\"tile\" data-path=\"{path}\"><img src=\"{url}{suffix}\" alt=\"{name}\">\
             <figcaption><span class=\"name\">{name}</span> <span class=\"state\"></span>\
             </figcaption></figure>"
        );
    }
    let stats_url = format!("/stats{suffix}");
    let _ = write!(
        html,
        "</main>\n{TRANSPORT_HTML}<script>const STATS = {};\n{WALL_JS}{TRANSPORT_JS}</script>\n</body></html>\n",
        serde_json::to_string(&stats_url).unwrap_or_default()
    );
    let mut response = Response::new(full_body(html));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    no_store(&mut response);
    response
}

const WALL_CSS: &str = "body{margin:0;font-family:system-ui,sans-serif;background:#0b0d10;color:#e8e8e8}\
header{display:flex;gap:1em;align-items:baseline;padding:.5em 1em;background:#161a20}\
#hint{color:#f0b429}\
#wall{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:6px;padding:6px}\
.tile{margin:0;position:relative;background:#000;cursor:zoom-in}\
.tile img{width:100%;display:block;aspect-ratio:16/9;object-fit:contain}\
.tile figcaption{position:absolute;left:0;right:0;bottom:0;padding:.2em .5em;background:rgba(0,0,0,.55);font-size:.9em}\
.tile.stale img{opacity:.35}.tile.stale .state{color:#ff6b6b}\
.tile.big{position:fixed;inset:0;z-index:10;cursor:zoom-out}.tile.big img{height:100%;aspect-ratio:auto}";

/// The time travel bar: hidden until the script shows it, so that without
/// scripting the page is the live wall.
const TRANSPORT_HTML: &str = "<footer id=\"transport\" hidden>\
<button id=\"live\" class=\"on\" title=\"Back to live (L)\">&#9679; Live</button>\
<button id=\"back\" title=\"One frame back, while paused (&#8592;)\">&#9664; Frame</button>\
<button id=\"play\" title=\"Play or pause (space)\">Pause</button>\
<button id=\"fwd\" title=\"One frame forward, while paused (&#8594;)\">Frame &#9654;</button>\
<select id=\"speed\" title=\"Replay speed\"><option>0.25</option><option>0.5</option>\
<option selected>1</option><option>2</option><option>4</option><option>8</option></select>\
<input id=\"when\" type=\"datetime-local\" step=\"0.001\" title=\"Go to a date and time (local)\">\
<span id=\"clock\">LIVE</span><span id=\"note\"></span>\
<div id=\"timeline\" title=\"Click or drag to travel\"><span id=\"tstart\"></span>\
<span id=\"tend\"></span><div id=\"cursor\"></div></div></footer>\n";

const TRANSPORT_CSS: &str = "body{padding-bottom:var(--bar,0)}\
#transport{position:fixed;left:0;right:0;bottom:0;z-index:20;display:flex;flex-wrap:wrap;gap:.4em;align-items:center;padding:.5em 1em;background:#161a20;border-top:1px solid #2a313b}\
#transport button,#transport select,#transport input{background:#232a33;color:#e8e8e8;border:1px solid #3a4350;border-radius:4px;padding:.25em .6em;font:inherit}\
#transport button:disabled,#transport select:disabled,#transport input:disabled{opacity:.4}\
#transport #live.on{background:#c62828;border-color:#e53935}\
#clock{font-variant-numeric:tabular-nums;margin-left:.5em}#note{color:#f0b429}\
#timeline{position:relative;flex:1 1 100%;height:26px;background:#2b3440;border-radius:4px;cursor:pointer;touch-action:none;overflow:hidden}\
#timeline .gap{position:absolute;top:0;bottom:0;background:repeating-linear-gradient(45deg,#0b0d10 0 4px,#1a1f26 4px 8px)}\
#timeline span{position:absolute;top:4px;font-size:.75em;color:#9aa4b1;pointer-events:none}#tstart{left:6px}#tend{right:6px}\
#cursor{position:absolute;top:0;bottom:0;width:3px;margin-left:-1px;background:#f0b429;pointer-events:none}\
.tile.replay figcaption .name::after{content:' \\00B7  replay';color:#f0b429}\
.tile.replay .state{display:none}.tile.replay.stale img{opacity:1}\
.tile.big{bottom:var(--bar,0)}";

/// Time travel: every tile of this tab follows one clock. Live shows the
/// live streams; playing replays each tile from the position (`?at=` and
/// `speed`); paused shows the frame of each tile at the position
/// (`/snapshot.jpg?at=`), and steps one frame with `at=` (back) and
/// `after=` (forward) from the first tile's frame time.
const TRANSPORT_JS: &str = r#"
const bar = document.getElementById('transport');
const $ = id => document.getElementById(id);
const TIMELINE = '/timeline' + suffix;
const travel = {mode: 'live', pos: 0, base: 0, speed: 1, frame: null, start: null, end: null};
const withToken = q => q + (suffix ? '&' + suffix.slice(1) : '');
// A tile's live URL, as the wall made it, and the same without a query.
function liveUrl(tile) {
  if (!tile.dataset.live) tile.dataset.live = tile.querySelector('img').getAttribute('src');
  return tile.dataset.live;
}
const streamUrl = tile => liveUrl(tile).split('?')[0];
function position() {
  if (travel.mode === 'live') return travel.end === null ? Date.now() : Math.max(travel.end, Date.now());
  if (travel.mode === 'play') return travel.pos + (performance.now() - travel.base) * travel.speed;
  return travel.pos;
}
function localText(ms) {
  const d = new Date(ms);
  return new Date(ms - d.getTimezoneOffset() * 60000).toISOString().slice(0, 23);
}
function render() {
  $('live').classList.toggle('on', travel.mode === 'live');
  $('play').textContent = travel.mode === 'play' ? 'Pause' : '\u25B6 Play';
  const paused = travel.mode === 'pause';
  $('back').disabled = !paused;
  $('fwd').disabled = !paused;
  for (const tile of tiles) tile.classList.toggle('replay', travel.mode !== 'live');
}
function tick() {
  const now = position();
  $('clock').textContent = travel.mode === 'live' ? 'LIVE'
    : `${localText(now).replace('T', ' ')} ${travel.mode === 'play' ? 'playing ' + travel.speed + '\u00D7' : 'paused'}`;
  if (travel.start !== null && travel.end !== null && travel.end > travel.start) {
    const x = Math.min(1, Math.max(0, (now - travel.start) / (Math.max(travel.end, now) - travel.start)));
    $('cursor').style.left = (x * 100) + '%';
  }
}
function setLive() {
  travel.mode = 'live';
  travel.frame = null;
  for (const tile of tiles) tile.querySelector('img').src = liveUrl(tile);
  render();
}
function play(at) {
  travel.mode = 'play';
  travel.pos = at;
  travel.base = performance.now();
  const t = Math.round(at);
  for (const tile of tiles) {
    const url = streamUrl(tile) + withToken(`?at=${t}&speed=${travel.speed}`);
    tile.querySelector('img').src = url;
  }
  render();
}
let shown = 0;
async function showAt(at, how) {
  travel.mode = 'pause';
  travel.pos = at;
  render();
  const request = ++shown;
  const t = Math.round(at);
  const answers = await Promise.all(tiles.map(async tile => {
    liveUrl(tile);
    try {
      const url = withToken(`/snapshot.jpg?stream=${encodeURIComponent(tile.dataset.path)}&${how}=${t}`);
      const response = await fetch(url, {cache: 'no-store'});
      if (!response.ok) return {tile, error: (await response.text()).trim()};
      return {tile, blob: await response.blob(), at: parseFloat(response.headers.get('X-Timestamp')) * 1000,
              clamped: response.headers.get('X-Replay-Clamped')};
    } catch (e) {
      return {tile, error: 'viewer unreachable'};
    }
  }));
  if (request !== shown || travel.mode !== 'pause') return;
  for (const answer of answers) {
    const img = answer.tile.querySelector('img');
    if (!answer.blob) continue;
    if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(answer.blob);
  }
  const first = answers.find(a => a.blob);
  $('note').textContent = first ? (first.clamped ? `no recording ${first.clamped === 'start' ? 'before' : 'after'} this` : '')
    : (answers[0] ? answers[0].error : '');
  if (first) {
    travel.frame = Math.round(first.at);
    travel.pos = first.at;
    $('when').value = localText(first.at);
  }
}
function pause() {
  return showAt(position(), 'at');
}
function jump(at) {
  if (travel.mode === 'pause') showAt(at, 'at'); else play(at);
  $('when').value = localText(at);
}
function step(direction) {
  if (travel.mode !== 'pause' || travel.frame === null) return;
  if (direction < 0) showAt(travel.frame - 1, 'at'); else showAt(travel.frame, 'after');
}
function togglePlay() {
  if (travel.mode === 'play') pause();
  else if (travel.mode === 'pause') play(travel.pos);
  else pause();
}
// One /timeline request at a time, given up after 10 s: on a slow broker the
// polls would pile up.
let timelineLoading = false;
async function loadTimeline() {
  if (timelineLoading) return;
  timelineLoading = true;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 10000);
  try {
    const answer = await (await fetch(TIMELINE, {cache: 'no-store', signal: abort.signal})).json();
    const usable = answer.streams.filter(s => !s.unavailable && s.start !== null);
    const line = $('timeline');
    line.querySelectorAll('.gap').forEach(g => g.remove());
    if (!usable.length) {
      const why = answer.streams.map(s => s.unavailable).find(Boolean);
      $('note').textContent = 'Live only: ' + (why || 'nothing recorded yet');
      for (const id of ['back', 'play', 'fwd', 'speed', 'when']) $(id).disabled = true;
      line.style.visibility = 'hidden';
      return;
    }
    line.style.visibility = '';
    $('play').disabled = $('speed').disabled = $('when').disabled = false;
    travel.start = Math.min(...usable.map(s => s.start));
    travel.end = Math.max(...usable.map(s => s.end));
    $('tstart').textContent = localText(travel.start).replace('T', ' ');
    $('tend').textContent = localText(travel.end).replace('T', ' ');
    const span = Math.max(1, travel.end - travel.start);
    for (const [from, to] of usable[0].gaps) {
      const gap = document.createElement('div');
      gap.className = 'gap';
      gap.style.left = ((from - travel.start) / span * 100) + '%';
      gap.style.width = ((to - from) / span * 100) + '%';
      gap.title = 'nothing recorded';
      line.append(gap);
    }
    render();
  } catch (e) {
    $('note').textContent = 'timeline unavailable';
  } finally {
    clearTimeout(timer);
    timelineLoading = false;
  }
}
function timeAt(event) {
  const box = $('timeline').getBoundingClientRect();
  const x = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
  return travel.start + x * (travel.end - travel.start);
}
let dragging = false;
$('timeline').addEventListener('pointerdown', e => {
  if (travel.start === null) return;
  dragging = true;
  $('timeline').setPointerCapture(e.pointerId);
  $('clock').textContent = localText(timeAt(e)).replace('T', ' ');
});
$('timeline').addEventListener('pointermove', e => {
  if (!dragging) return;
  const at = timeAt(e);
  $('cursor').style.left = ((at - travel.start) / (travel.end - travel.start) * 100) + '%';
  $('clock').textContent = localText(at).replace('T', ' ');
});
$('timeline').addEventListener('pointerup', e => {
  if (!dragging) return;
  dragging = false;
  jump(timeAt(e));
});
// Space and the arrows drive the bar, not a button that kept the focus.
for (const button of bar.querySelectorAll('button')) button.addEventListener('click', () => button.blur());
$('live').addEventListener('click', setLive);
$('play').addEventListener('click', togglePlay);
$('back').addEventListener('click', () => step(-1));
$('fwd').addEventListener('click', () => step(1));
$('speed').addEventListener('change', () => {
  travel.speed = parseFloat($('speed').value);
  if (travel.mode === 'play') play(position());
  else travel.base = performance.now();
});
$('when').addEventListener('change', () => {
  const at = new Date($('when').value).getTime();
  if (!Number.isNaN(at)) jump(at);
});
document.addEventListener('keydown', e => {
  if (e.target.closest && e.target.closest('input, select')) return;
  if (e.key === ' ') togglePlay();
  else if (e.key === 'ArrowLeft') travel.mode === 'play' ? play(position() - 10000) : step(-1);
  else if (e.key === 'ArrowRight') travel.mode === 'play' ? play(position() + 10000) : step(1);
  else if (e.key === 'l' || e.key === 'L') setLive();
  else return;
  e.preventDefault();
});
bar.hidden = false;
// Room for the bar under the wall and an enlarged tile, however it wraps.
const fitBar = () => document.body.style.setProperty('--bar', bar.offsetHeight + 'px');
fitBar();
window.addEventListener('resize', fitBar);
render();
loadTimeline();
setInterval(loadTimeline, 5000);
setInterval(tick, 200);
"#;

/// Enlarges a tile on click; every 2 s reads /stats, adds a tile for each
/// camera that appeared since (in place of its sink's mixed stream) and
/// marks the tiles whose camera sent nothing for more than 3 s.
const WALL_JS: &str = r#"
const wall = document.getElementById('wall');
const hint = document.getElementById('hint');
const suffix = STATS.slice('/stats'.length);
let tiles = [...document.querySelectorAll('.tile')];
function watch(tile) {
  tile.addEventListener('click', () => tile.classList.toggle('big'));
  // A stream cut off (viewer restarted, connection reset) is asked again.
  const img = tile.querySelector('img');
  img.addEventListener('error', () => setTimeout(() => {
    if (!img.src.startsWith('blob:')) img.src = img.src;
  }, 2000));
}
tiles.forEach(watch);
function addCamera(stream) {
  const tile = document.createElement('figure');
  tile.className = 'tile';
  tile.dataset.path = stream.path;
  const img = document.createElement('img');
  img.src = stream.camera_of.split('/').map(encodeURIComponent).join('/') + '/'
    + encodeURIComponent(stream.camera) + suffix;
  img.alt = stream.camera;
  const caption = document.createElement('figcaption');
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = stream.camera;
  const state = document.createElement('span');
  state.className = 'state';
  caption.append(name, ' ', state);
  tile.append(img, caption);
  watch(tile);
  wall.append(tile);
  for (const mixed of tiles) {
    if (mixed.dataset.path === stream.camera_of) mixed.remove();
  }
  tiles = [...document.querySelectorAll('.tile')];
  document.title = `gst-kafka: ${tiles.length} camera(s)`;
  document.querySelector('header span').textContent = `${tiles.length} camera(s)`;
}
function show(tile, stale, text) {
  tile.classList.toggle('stale', stale);
  tile.querySelector('.state').textContent = text;
}
async function poll() {
  hint.hidden = !(location.protocol === 'http:' && tiles.length > 6);
  // Over HTTP/1.1 this request may wait behind six streams: give up in time.
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 3000);
  let stats;
  try {
    stats = await (await fetch(STATS, {cache: 'no-store', signal: abort.signal})).json();
  } catch (e) {
    stats = null;
  } finally {
    clearTimeout(timer);
  }
  if (stats) {
    const known = new Set(tiles.map(t => t.dataset.path));
    for (const stream of stats.streams) {
      if (stream.camera && !known.has(stream.path)) addCamera(stream);
    }
  }
  const ages = new Map((stats ? stats.streams : []).map(s => [s.path, s.last_frame_age]));
  for (const tile of tiles) {
    if (!tile.querySelector('img').naturalWidth) {
      show(tile, true, hint.hidden ? 'no picture yet' : 'no picture: no connection left (HTTP/1.1)');
      continue;
    }
    if (!stats) {
      show(tile, false, '');
      continue;
    }
    const age = ages.get(tile.dataset.path);
    const stale = typeof age !== 'number' || age > 3;
    show(tile, stale, stale ? (typeof age === 'number' ? `no picture for ${Math.round(age)} s` : 'no picture yet') : '');
  }
}
poll();
setInterval(poll, 2000);
"#;

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The JSON of `/stats`: the server's connection counts and the streams the
/// request may see.
#[derive(Serialize)]
struct StatsJson {
    #[serde(flatten)]
    server: ServerStats,
    streams: Vec<StreamStats>,
}

fn stats_json(server: &Server, streams: &[Arc<Stream>]) -> Response<ResponseBody> {
    let stats = StatsJson {
        server: server.stats(),
        streams: streams.iter().map(|s| s.stats()).collect(),
    };
    json_response(&stats)
}

fn metrics_text(server: &Server, streams: &[Arc<Stream>]) -> Response<ResponseBody> {
    let stats: Vec<StreamStats> = streams.iter().map(|s| s.stats()).collect();
    let mut response = Response::new(full_body(metrics::render(&server.stats(), &stats)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    no_store(&mut response);
    response
}

// SPDX-License-Identifier: MPL-2.0

//! The HTTP server inside `mjpeghttpsink`: one per address and port, shared
//! by every sink of the process that serves there under its own path.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::task::JoinHandle;

use super::nosigpipe::NoSigPipe;
use super::stream::{BOUNDARY, ResponseBody, Stream, full_body, spawn_feed};
use crate::runtime::RUNTIME;

/// A client must send its request headers within this time (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long stopping waits for connections to close.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);
/// Request heads larger than this are refused.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

pub struct Server {
    pub local_addr: SocketAddr,
    streams: Mutex<Vec<Arc<Stream>>>,
    tasks: Mutex<HashMap<u64, JoinHandle<()>>>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

/// Servers by the address they were asked for (port 0 is never shared).
static SERVERS: LazyLock<Mutex<HashMap<SocketAddr, Weak<Server>>>> =
    LazyLock::new(Default::default);

impl Server {
    /// Adds `stream` to the server at `addr`, starting it if needed.
    pub fn attach(addr: SocketAddr, stream: Arc<Stream>) -> Result<Arc<Server>, String> {
        let mut servers = SERVERS.lock().unwrap();
        let existing = (addr.port() != 0)
            .then(|| servers.get(&addr).and_then(Weak::upgrade))
            .flatten();
        let server = match existing {
            Some(server) => server,
            None => {
                let server = Server::bind(addr)?;
                if addr.port() != 0 {
                    servers.insert(addr, Arc::downgrade(&server));
                }
                server
            }
        };
        let mut streams = server.streams.lock().unwrap();
        if streams.iter().any(|s| s.config.path == stream.config.path) {
            return Err(format!(
                "path {} is already served on {addr} by another mjpeghttpsink",
                stream.config.path
            ));
        }
        streams.push(stream);
        drop(streams);
        Ok(server)
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

    fn bind(addr: SocketAddr) -> Result<Arc<Server>, String> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
        let local_addr = listener.local_addr().map_err(|err| err.to_string())?;
        let server = Arc::new(Server {
            local_addr,
            streams: Mutex::new(Vec::new()),
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

    fn stream_for(&self, path: &str) -> Option<Arc<Stream>> {
        self.streams
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.config.path == path)
            .cloned()
    }

    fn all_streams(&self) -> Vec<Arc<Stream>> {
        self.streams.lock().unwrap().clone()
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, server: Weak<Server>) {
    let mut next_task = 0u64;
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off, keep serving.
                gst::warning!(super::imp::CAT, "accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let Some(owner) = server.upgrade() else {
            return;
        };
        let id = next_task;
        next_task += 1;
        let weak = server.clone();
        let task = tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let server = weak.upgrade();
                async move {
                    Ok::<_, std::convert::Infallible>(match server {
                        Some(server) => route(&server, request, peer),
                        None => plain(StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_REQUEST_HEAD.max(8192))
                .serve_connection(TokioIo::new(NoSigPipe(socket)), service)
                .await;
        });
        let mut tasks = owner.tasks.lock().unwrap();
        tasks.retain(|_, handle| !handle.is_finished());
        tasks.insert(id, task);
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

fn query_param<'a>(request: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// Whether `request` carries credentials `stream` accepts (basic auth, or
/// the token as a query parameter, for `<img>` tags).
fn authorized(stream: &Stream, request: &Request<Incoming>) -> bool {
    let config = &stream.config;
    if config.auth.is_none() && config.auth_token.is_none() {
        return true;
    }
    if let (Some(token), Some(given)) = (&config.auth_token, query_param(request, "token"))
        && constant_time_eq(token.as_bytes(), given.as_bytes())
    {
        return true;
    }
    let Some(expected) = &config.auth else {
        return false;
    };
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .is_some_and(|decoded| constant_time_eq(&decoded, expected.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized() -> Response<ResponseBody> {
    let mut response = plain(StatusCode::UNAUTHORIZED, "credentials required\n");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"mjpeghttpsink\""),
    );
    response
}

fn with_cors(
    mut response: Response<ResponseBody>,
    streams: &[Arc<Stream>],
) -> Response<ResponseBody> {
    let origin = streams.iter().find_map(|s| s.config.cors_origin.clone());
    if let Some(origin) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
        let headers = response.headers_mut();
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

fn route(server: &Server, request: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
    let path = request.uri().path().to_string();
    let streams = server.all_streams();
    // The stream this request is about; server-wide pages need the
    // credentials of one of the streams.
    let target = match path.as_str() {
        "/" | "/stats" => None,
        "/snapshot.jpg" => match query_param(&request, "stream") {
            Some(wanted) => server.stream_for(wanted),
            None => streams.first().cloned(),
        },
        other => server.stream_for(other),
    };
    let known = matches!(path.as_str(), "/" | "/stats" | "/snapshot.jpg") || target.is_some();
    if !known {
        return with_cors(
            plain(StatusCode::NOT_FOUND, "no such stream or page\n"),
            &streams,
        );
    }
    let allowed = match &target {
        Some(stream) => authorized(stream, &request),
        None => {
            streams
                .iter()
                .all(|s| s.config.auth.is_none() && s.config.auth_token.is_none())
                || streams.iter().any(|s| authorized(s, &request))
        }
    };
    let response = match *request.method() {
        Method::OPTIONS => {
            let mut response = plain(StatusCode::NO_CONTENT, "");
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            *response.body_mut() = full_body(Bytes::new());
            response
        }
        Method::GET | Method::HEAD if !allowed => unauthorized(),
        Method::GET | Method::HEAD => {
            let head = request.method() == Method::HEAD;
            let mut response = match (path.as_str(), target) {
                ("/", _) => index(&streams, query_param(&request, "token")),
                ("/stats", _) => stats_json(&streams),
                ("/snapshot.jpg", Some(stream)) => snapshot(&stream),
                ("/snapshot.jpg", None) => plain(StatusCode::NOT_FOUND, "no such stream\n"),
                (_, Some(stream)) => open_stream(stream, &request, peer, head),
                (_, None) => plain(StatusCode::NOT_FOUND, "no such stream\n"),
            };
            if head {
                *response.body_mut() = full_body(Bytes::new());
            }
            response
        }
        _ => {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET, HEAD and OPTIONS\n",
            );
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            response
        }
    };
    with_cors(response, &streams)
}

fn open_stream(
    stream: Arc<Stream>,
    request: &Request<Incoming>,
    peer: SocketAddr,
    head: bool,
) -> Response<ResponseBody> {
    let user_agent = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let body = if head {
        full_body(Bytes::new())
    } else {
        let Some(id) = stream.add_client(peer, user_agent) else {
            let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "too many clients\n");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return response;
        };
        spawn_feed(stream, id)
    };
    let mut response = Response::new(body);
    let content_type = format!("multipart/x-mixed-replace;boundary={BOUNDARY}");
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).expect("valid header value"),
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
    let mut response = Response::new(full_body(frame.jpeg.clone()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    no_store(&mut response);
    response
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

fn index(streams: &[Arc<Stream>], token: Option<&str>) -> Response<ResponseBody> {
    let suffix = token
        .map(|t| format!("?token={}", html_escape(t)))
        .unwrap_or_default();
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>gst-kafka MJPEG</title>\
         <style>body{font-family:sans-serif;background:#111;color:#eee}img{max-width:100%;display:block}</style>\
         </head><body>\n",
    );
    for stream in streams {
        let path = html_escape(&stream.config.path);
        let _ = writeln!(
            html,
            "<h2>{path}</h2>\n<img src=\"{path}{suffix}\" alt=\"{path}\">"
        );
    }
    html.push_str("</body></html>\n");
    let mut response = Response::new(full_body(html));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    no_store(&mut response);
    response
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn stats_json(streams: &[Arc<Stream>]) -> Response<ResponseBody> {
    let mut json = String::from("{\"streams\":[");
    for (i, stream) in streams.iter().enumerate() {
        let input = stream.input.lock().unwrap();
        let (frames_in, not_jpeg, fps) = (input.frames_in, input.not_jpeg, input.fps);
        drop(input);
        let clients: Vec<String> = stream
            .clients
            .lock()
            .unwrap()
            .values()
            .map(|c| {
                format!(
                    "{{\"address\":{},\"user_agent\":{},\"frames_sent\":{},\"frames_skipped\":{},\"bytes\":{}}}",
                    json_string(&c.address),
                    json_string(&c.user_agent),
                    c.frames_sent,
                    c.frames_skipped,
                    c.bytes
                )
            })
            .collect();
        let _ = write!(
            json,
            "{}{{\"path\":{},\"input_fps\":{:.2},\"frames_in\":{frames_in},\"not_jpeg\":{not_jpeg},\"clients\":[{}]}}",
            if i > 0 { "," } else { "" },
            json_string(&stream.config.path),
            fps,
            clients.join(",")
        );
    }
    json.push_str("]}\n");
    let mut response = Response::new(full_body(json));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(&mut response);
    response
}

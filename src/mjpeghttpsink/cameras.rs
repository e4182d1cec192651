// SPDX-License-Identifier: MPL-2.0

//! The cameras of one sink: when buffers say which camera they show (the
//! `GstKafkaRecordMeta` kafkasrc adds: record key, else stream id), each
//! camera gets a stream of its own at `<path>/<camera>`, made on its first
//! frame. One Kafka consumer then feeds a whole wall of cameras.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use super::server::Server;
use super::signals::SignalEmitter;
use super::stream::{CameraOf, Frame, Stream, StreamConfig};

/// What became of a frame's camera.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Published on the camera's stream.
    Published,
    /// The camera is new: its stream was made at this path.
    Added(String),
    /// `max-cameras` streams exist already: the frame is only on the sink's
    /// own stream.
    OverLimit,
    /// The camera's path is taken by another stream of the server.
    PathTaken(String),
}

struct Camera {
    stream: Arc<Stream>,
    seq: u64,
}

pub struct Cameras {
    server: Arc<Server>,
    /// The sink's own stream settings, which camera streams copy.
    template: StreamConfig,
    signals: Arc<SignalEmitter>,
    max: usize,
    /// `None`: the camera's path was taken; not tried again.
    cameras: HashMap<String, Option<Camera>>,
}

impl Cameras {
    pub fn new(
        server: Arc<Server>,
        template: StreamConfig,
        signals: Arc<SignalEmitter>,
        max: usize,
    ) -> Cameras {
        Cameras {
            server,
            template,
            signals,
            max,
            cameras: HashMap::new(),
        }
    }

    /// `max-cameras` is 0: no camera gets a stream.
    pub fn disabled(&self) -> bool {
        self.max == 0
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Shows `jpeg` on the stream of camera `name`, making it if needed.
    pub fn publish(
        &mut self,
        element: &gst::Element,
        name: &str,
        jpeg: Bytes,
        captured: SystemTime,
    ) -> Outcome {
        if let Some(known) = self.cameras.get_mut(name) {
            return match known {
                Some(camera) => {
                    camera.seq += 1;
                    camera
                        .stream
                        .publish(Frame::new(camera.seq, jpeg, captured));
                    Outcome::Published
                }
                None => Outcome::PathTaken(camera_path(&self.template.path, name)),
            };
        }
        if self.cameras.len() >= self.max {
            return Outcome::OverLimit;
        }
        let path = camera_path(&self.template.path, name);
        let config = StreamConfig {
            path: path.clone(),
            camera: Some(CameraOf {
                sink_path: self.template.path.clone(),
                name: name.to_string(),
            }),
            ..self.template.clone()
        };
        let stream = Arc::new(Stream::new(config, element, self.signals.clone()));
        if self.server.add(stream.clone()).is_err() {
            self.cameras.insert(name.to_string(), None);
            return Outcome::PathTaken(path);
        }
        stream.publish(Frame::new(1, jpeg, captured));
        self.cameras
            .insert(name.to_string(), Some(Camera { stream, seq: 1 }));
        Outcome::Added(path)
    }

    pub fn end_of_stream(&self) {
        for camera in self.cameras.values().flatten() {
            camera.stream.end_of_stream();
        }
    }

    /// Ends every camera's responses and stops serving them.
    pub fn stop(self, requested: std::net::SocketAddr) {
        for camera in self.cameras.into_values().flatten() {
            camera.stream.stop();
            self.server.detach(&camera.stream, requested);
        }
    }
}

fn camera_path(path: &str, name: &str) -> String {
    format!("{}/{name}", path.trim_end_matches('/'))
}

// SPDX-License-Identifier: MPL-2.0

//! `client-added` and `client-removed`, emitted from a thread of the sink's
//! own: handlers run there, so a slow one delays other handlers, never the
//! HTTP server or Kafka on the shared runtime.

use std::sync::mpsc;

use gst::glib;
use gst::prelude::*;

use crate::throttle::Throttle;

#[derive(Debug)]
pub enum ClientEvent {
    Added { address: String, user_agent: String },
    Removed { address: String },
}

/// Events waiting for a slow handler at most; beyond, they are dropped
/// with a warning, so that connection churn cannot grow memory without end.
const QUEUE_LENGTH: usize = 1024;

/// Queues events for the emitter thread, which ends once every sender is
/// gone and the queue is drained.
#[derive(Debug)]
pub struct SignalEmitter {
    queue: mpsc::SyncSender<ClientEvent>,
    element: glib::WeakRef<gst::Element>,
    dropped_warnings: Throttle,
}

impl SignalEmitter {
    pub fn spawn(element: &gst::Element) -> std::io::Result<SignalEmitter> {
        let (queue, rx) = mpsc::sync_channel(QUEUE_LENGTH);
        let weak: glib::WeakRef<gst::Element> = element.downgrade();
        std::thread::Builder::new()
            .name("mjpeghttpsink-signals".into())
            .spawn(move || {
                for event in rx {
                    let Some(element) = weak.upgrade() else {
                        return;
                    };
                    match event {
                        ClientEvent::Added {
                            address,
                            user_agent,
                        } => element.emit_by_name::<()>("client-added", &[&address, &user_agent]),
                        ClientEvent::Removed { address } => {
                            element.emit_by_name::<()>("client-removed", &[&address])
                        }
                    }
                }
            })?;
        Ok(SignalEmitter {
            queue,
            element: element.downgrade(),
            dropped_warnings: Throttle::default(),
        })
    }

    pub fn send(&self, event: ClientEvent) {
        match self.queue.try_send(event) {
            // Disconnected: the thread is gone with the element, nobody listens.
            Ok(()) | Err(mpsc::TrySendError::Disconnected(_)) => (),
            Err(mpsc::TrySendError::Full(_)) => {
                if let Some(held_back) = self.dropped_warnings.allow()
                    && let Some(element) = self.element.upgrade()
                {
                    gst::element_warning!(
                        element,
                        gst::CoreError::Event,
                        (
                            "dropped {} client-added/client-removed signal(s): {QUEUE_LENGTH} wait for a slow handler",
                            held_back + 1
                        )
                    );
                }
            }
        }
    }
}

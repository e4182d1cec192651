// SPDX-License-Identifier: MPL-2.0

//! `client-added` and `client-removed`, emitted from a thread of the sink's
//! own: handlers run there, so a slow one delays other handlers, never the
//! HTTP server or Kafka on the shared runtime.

use std::sync::mpsc;

use gst::glib;
use gst::prelude::*;

#[derive(Debug)]
pub enum ClientEvent {
    Added { address: String, user_agent: String },
    Removed { address: String },
}

/// Queues events for the emitter thread, which ends once every sender is
/// gone and the queue is drained. The queue is unbounded like a bus: events
/// come at most one pair per connection.
#[derive(Debug)]
pub struct SignalEmitter(mpsc::Sender<ClientEvent>);

impl SignalEmitter {
    pub fn spawn(element: &gst::Element) -> std::io::Result<SignalEmitter> {
        let (tx, rx) = mpsc::channel();
        let element: glib::WeakRef<gst::Element> = element.downgrade();
        std::thread::Builder::new()
            .name("mjpeghttpsink-signals".into())
            .spawn(move || {
                for event in rx {
                    let Some(element) = element.upgrade() else {
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
        Ok(SignalEmitter(tx))
    }

    pub fn send(&self, event: ClientEvent) {
        // An error means the thread is gone with the element: nobody listens.
        let _ = self.0.send(event);
    }
}

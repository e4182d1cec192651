// SPDX-License-Identifier: MPL-2.0

//! Gives a librdkafka client its bootstrap servers back when librdkafka has
//! forgotten every broker.
//!
//! librdkafka (2.10 and later) drops each learned broker a metadata response
//! leaves out. A KRaft broker its controller has fenced still answers, with
//! no broker in the list: a single broker frozen or restarting for longer
//! than its `broker.session.timeout.ms` (9 s) can do that for a moment. The
//! client is then left with no broker to ask for metadata. Neither of
//! librdkafka's re-bootstrap triggers can fire: "all brokers down" counts
//! brokers that exist, and the `metadata.recovery.rebootstrap.trigger.ms`
//! timer starts with a metadata request. So records wait until they time
//! out and consumers stop, for good (confluentinc/librdkafka#5301, open).
//!
//! The sign is the cached controller id going back to -1 once one was
//! known: librdkafka sets it from metadata responses only, and a KRaft
//! broker names no controller exactly when it lists no broker. The remedy is
//! adding the bootstrap servers again, once per loss: that configured broker
//! is kept while the brokers listed are none (librdkafka only drops
//! configured brokers once it has learned others), and it asks for metadata
//! until the broker is listed again. Should no broker be listed a minute
//! later, they are added again, once a minute.

use std::ffi::CString;
use std::sync::{Arc, Weak};
use std::time::Duration;

use gst::prelude::*;
use rdkafka::bindings;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafka;
use tokio::task::JoinHandle;

use crate::kafka::{self, RDKAFKA_CAT};
use crate::runtime::RUNTIME;

/// How often the client is looked at: a recovery waits about this long.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A librdkafka client the watch can reach.
///
/// # Safety
///
/// `librdkafka_client()` must return a handle that stays valid for as long
/// as `self` does.
pub unsafe trait LibrdkafkaClient: Send + Sync + 'static {
    fn librdkafka_client(&self) -> *mut RDKafka;
}

/// Watches one client for as long as it lives, or until dropped.
#[derive(Debug)]
pub struct BrokerWatch(JoinHandle<()>);

impl Drop for BrokerWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Looks between additions while no broker is listed: a safety net, in
/// case the added broker was dropped too; each addition stays in
/// librdkafka's memory, so not more often.
const RETRY_LOOKS: u32 = 60;

/// What a look at the client calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    None,
    /// Every broker was just forgotten: add the bootstrap servers.
    Add,
    /// Still no broker listed long after the addition: add them again.
    AddAgain,
}

/// The watch's memory between looks.
#[derive(Debug, Default)]
struct Watch {
    /// A controller was known since start or since the last addition.
    controller_known: bool,
    /// Looks since the last addition, while no controller is known.
    looks_since_added: Option<u32>,
}

impl Watch {
    fn look(&mut self, controller_id: i32) -> Action {
        if controller_id >= 0 {
            self.controller_known = true;
            self.looks_since_added = None;
            return Action::None;
        }
        // -1 before the first metadata response is the normal start; after
        // an addition, the added broker asks until a broker is listed.
        if std::mem::take(&mut self.controller_known) {
            self.looks_since_added = Some(0);
            return Action::Add;
        }
        match &mut self.looks_since_added {
            Some(looks) if *looks + 1 >= RETRY_LOOKS => {
                *looks = 0;
                Action::AddAgain
            }
            Some(looks) => {
                *looks += 1;
                Action::None
            }
            None => Action::None,
        }
    }
}

/// Watches `client` of `element`, created with `config`, until it is
/// dropped or the returned watch is; `None` when `config` opts out of
/// re-bootstrapping (`metadata.recovery.strategy=none`).
pub fn watch<T: LibrdkafkaClient>(
    element: &gst::Element,
    client: &Arc<T>,
    config: &ClientConfig,
) -> Option<BrokerWatch> {
    if kafka::setting(config, "metadata.recovery.strategy")
        .is_some_and(|strategy| strategy.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    // A property string holds no NUL byte.
    let servers = CString::new(kafka::setting(config, "bootstrap.servers")?).ok()?;
    let client: Weak<T> = Arc::downgrade(client);
    let element = element.downgrade();
    Some(BrokerWatch(RUNTIME.spawn(async move {
        let mut watch = Watch::default();
        let mut interval = tokio::time::interval(CHECK_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(client) = client.upgrade() else {
                return;
            };
            let handle = client.librdkafka_client();
            // SAFETY: `client` keeps the handle valid; this reads the cached
            // id under librdkafka's locks and never waits.
            let controller_id = unsafe { bindings::rd_kafka_controllerid(handle, 0) };
            let action = watch.look(controller_id);
            if action == Action::Add
                && let Some(element) = element.upgrade()
            {
                gst::element_warning!(
                    element,
                    gst::ResourceError::Read,
                    (
                        "Kafka listed no broker (a fenced broker answers so) and librdkafka \
                             forgot every broker: connecting to {} again",
                        servers.to_string_lossy()
                    )
                );
            }
            if action != Action::None {
                // SAFETY: as above; librdkafka copies the list.
                let added = unsafe { bindings::rd_kafka_brokers_add(handle, servers.as_ptr()) };
                gst::debug!(RDKAFKA_CAT, "{action:?}: {added} bootstrap server(s)");
            }
            // The element may have let go of the client meanwhile: destroying
            // it joins librdkafka's threads, which is no job for the runtime.
            if let Some(last) = Arc::into_inner(client) {
                tokio::task::spawn_blocking(move || drop(last));
            }
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_controller_before_the_first_metadata_is_the_normal_start() {
        let mut watch = Watch::default();
        for _ in 0..1000 {
            assert_eq!(watch.look(-1), Action::None);
        }
    }

    #[test]
    fn losing_the_controller_adds_the_bootstrap_servers_once_then_rarely() {
        let mut watch = Watch::default();
        assert_eq!(watch.look(1), Action::None);
        assert_eq!(watch.look(1), Action::None);
        assert_eq!(watch.look(-1), Action::Add);
        let looks: Vec<Action> = (0..2 * RETRY_LOOKS).map(|_| watch.look(-1)).collect();
        let again: Vec<usize> = (0..looks.len())
            .filter(|&i| looks[i] == Action::AddAgain)
            .collect();
        let every = RETRY_LOOKS as usize;
        assert_eq!(again, [every - 1, 2 * every - 1]);
        // Brokers listed again: the next loss is acted on at once again.
        assert_eq!(watch.look(3), Action::None);
        assert_eq!(watch.look(-1), Action::Add);
        assert_eq!(watch.look(-1), Action::None);
    }
}

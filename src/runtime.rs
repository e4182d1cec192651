// SPDX-License-Identifier: MPL-2.0

//! The plugin's shared tokio runtime and the cancellable `wait()` that
//! streaming threads use to block on it.

use std::future::Future;
use std::sync::LazyLock;

use tokio::sync::watch;

/// One runtime for every element of the plugin: Kafka clients, admin
/// requests and the HTTP servers all run here.
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("gst-kafka-runtime")
        .build()
        .expect("cannot build the gst-kafka tokio runtime")
});

/// The future was abandoned because the element was unlocked (flushing or
/// shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// Lets `unlock()` abort whatever a streaming thread is waiting on, and keeps
/// aborting until `unlock_stop()` resets it.
#[derive(Debug)]
pub struct Canceller(watch::Sender<bool>);

impl Default for Canceller {
    fn default() -> Self {
        Canceller(watch::Sender::new(false))
    }
}

impl Canceller {
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    pub fn reset(&self) {
        self.0.send_replace(false);
    }

    /// Resolves once `cancel()` has been called (at once if it already was).
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            // An error means the sender is gone, which also ends the wait.
            let _ = rx.wait_for(|cancelled| *cancelled).await;
        }
    }
}

/// Blocks the calling (non-runtime) thread on `future`, unless `canceller`
/// fires first.
pub fn wait<F: Future>(canceller: &Canceller, future: F) -> Result<F::Output, Cancelled> {
    let cancelled = canceller.cancelled();
    RUNTIME.block_on(async {
        tokio::select! {
            biased;
            _ = cancelled => Err(Cancelled),
            output = future => Ok(output),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wait_returns_the_output() {
        let canceller = Canceller::default();
        assert_eq!(wait(&canceller, async { 7 }), Ok(7));
    }

    #[test]
    fn cancel_aborts_a_pending_wait_and_sticks_until_reset() {
        let canceller = std::sync::Arc::new(Canceller::default());
        let other = canceller.clone();
        let thread = std::thread::spawn(move || wait(&other, std::future::pending::<()>()));
        // The waiting thread may or may not have started: either way it must end.
        canceller.cancel();
        assert_eq!(thread.join().unwrap(), Err(Cancelled));
        assert_eq!(
            wait(&canceller, async {
                tokio::time::sleep(Duration::from_secs(60)).await
            }),
            Err(Cancelled)
        );
        canceller.reset();
        assert_eq!(wait(&canceller, async { 1 }), Ok(1));
    }
}

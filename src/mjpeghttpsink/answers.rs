// SPDX-License-Identifier: MPL-2.0

//! Answers that take a blocking broker scan (a topic's `/timeline`),
//! computed once per key at a time and kept a few seconds: requests that
//! come during a scan wait for it, a request that goes away does not stop
//! it (its answer serves the next one), and at most a few scans run at
//! once, whatever the number of tabs and topics.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

type Entry<V> = Arc<tokio::sync::Mutex<Option<(Instant, Result<V, String>)>>>;

pub struct SharedAnswers<K, V> {
    fresh: Duration,
    scans: Arc<Semaphore>,
    /// One entry per key ever asked, never removed: for `/timeline` one
    /// per brokers, topic and partition the process's sinks replay.
    entries: Mutex<HashMap<K, Entry<V>>>,
}

impl<K, V> SharedAnswers<K, V>
where
    K: Hash + Eq,
    V: Clone + Send + 'static,
{
    /// Answers kept for `fresh`, at most `max_scans` computed at once.
    pub fn new(fresh: Duration, max_scans: usize) -> Self {
        SharedAnswers {
            fresh,
            scans: Arc::new(Semaphore::new(max_scans)),
            entries: Mutex::default(),
        }
    }

    /// The answer for `key`: kept, or computed by `scan` on a blocking
    /// thread. Failures are kept too, so a broker that is down is asked
    /// once per `fresh`, not once per request.
    pub async fn get(
        &self,
        key: K,
        scan: impl FnOnce() -> Result<V, String> + Send + 'static,
    ) -> Result<V, String> {
        let entry = self.entries.lock().unwrap().entry(key).or_default().clone();
        let mut kept = entry.lock_owned().await;
        if let Some((at, answer)) = kept.as_ref()
            && at.elapsed() < self.fresh
        {
            return answer.clone();
        }
        let permit = self
            .scans
            .clone()
            .acquire_owned()
            .await
            .map_err(|err| err.to_string())?;
        // The scan owns the entry's lock and the permit: when the request
        // is gone, both are held until the scan ends.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let answer = scan();
            *kept = Some((Instant::now(), answer.clone()));
            answer
        })
        .await
        .unwrap_or_else(|err| Err(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RUNTIME;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counting_scan(
        scans: &Arc<AtomicUsize>,
        takes: Duration,
    ) -> impl FnOnce() -> Result<usize, String> + Send + 'static {
        let scans = scans.clone();
        move || {
            let scan = scans.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::sleep(takes);
            Ok(scan)
        }
    }

    #[test]
    fn requests_during_a_scan_share_it() {
        let answers = Arc::new(SharedAnswers::new(Duration::from_secs(5), 4));
        let scans = Arc::new(AtomicUsize::new(0));
        let got = RUNTIME.block_on(async {
            let tasks: Vec<_> = (0..10)
                .map(|_| {
                    let (answers, scan) = (
                        answers.clone(),
                        counting_scan(&scans, Duration::from_millis(100)),
                    );
                    tokio::spawn(async move { answers.get("cam1", scan).await })
                })
                .collect();
            let mut got = Vec::new();
            for task in tasks {
                got.push(task.await.unwrap());
            }
            got
        });
        assert_eq!(scans.load(Ordering::SeqCst), 1);
        assert!(got.iter().all(|answer| *answer == Ok(1)), "{got:?}");
    }

    #[test]
    fn a_request_gone_mid_scan_leaves_its_answer_to_the_next() {
        let answers = Arc::new(SharedAnswers::new(Duration::from_secs(5), 4));
        let scans = Arc::new(AtomicUsize::new(0));
        RUNTIME.block_on(async {
            let first = answers.get("cam1", counting_scan(&scans, Duration::from_millis(300)));
            // The first request goes away while its scan runs.
            assert!(
                tokio::time::timeout(Duration::from_millis(50), first)
                    .await
                    .is_err()
            );
            let second = answers
                .get("cam1", counting_scan(&scans, Duration::ZERO))
                .await;
            assert_eq!(second, Ok(1));
        });
        assert_eq!(scans.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn scans_of_different_keys_are_bounded() {
        let answers = Arc::new(SharedAnswers::new(Duration::from_secs(5), 2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        RUNTIME.block_on(async {
            let tasks: Vec<_> = (0..6)
                .map(|key| {
                    let (answers, running, most) = (answers.clone(), running.clone(), most.clone());
                    tokio::spawn(async move {
                        answers
                            .get(key, move || {
                                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                                most.fetch_max(now, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(50));
                                running.fetch_sub(1, Ordering::SeqCst);
                                Ok(key)
                            })
                            .await
                    })
                })
                .collect();
            for (key, task) in tasks.into_iter().enumerate() {
                assert_eq!(task.await.unwrap(), Ok(key));
            }
        });
        assert!(most.load(Ordering::SeqCst) <= 2, "{most:?} at once");
    }

    #[test]
    fn an_answer_is_kept_then_asked_again() {
        let answers = SharedAnswers::new(Duration::from_millis(300), 4);
        let scans = Arc::new(AtomicUsize::new(0));
        RUNTIME.block_on(async {
            let scan = || counting_scan(&scans, Duration::ZERO);
            assert_eq!(answers.get("cam1", scan()).await, Ok(1));
            assert_eq!(answers.get("cam1", scan()).await, Ok(1), "kept");
            let deadline = Instant::now() + Duration::from_secs(5);
            while answers.get("cam1", scan()).await != Ok(2) {
                assert!(Instant::now() < deadline, "never asked again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        assert_eq!(scans.load(Ordering::SeqCst), 2);
    }
}

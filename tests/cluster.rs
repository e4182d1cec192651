// SPDX-License-Identifier: MPL-2.0

//! Against a three-broker cluster (scripts/kafka.sh cluster) of this test
//! binary's own: a partition leader killed mid-stream and a rolling restart
//! of the three brokers under a live stream with a viewer, every element
//! setting at its default; a stop while a new topic's leader is frozen.
//! The tests run one at a time: each one hurts the cluster.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http::*;
use common::*;
use gst::prelude::*;

const TIMEOUT: Duration = Duration::from_secs(120);

/// The longest a viewer of the rolling restart may go without a new frame:
/// a stall a viewer would call a freeze (the gaps measured were under 2 s;
/// docs/reliability.md).
const MAX_VIEWER_GAP: Duration = Duration::from_secs(5);

fn cluster() -> &'static OwnBroker {
    static CLUSTER: std::sync::OnceLock<&'static OwnBroker> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| use_own_broker(OwnBroker::cluster()))
}

/// One fault at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A topic on all three brokers that takes a write once two have it.
fn replicated_topic(name: &str) -> String {
    let topic = unique_topic(name);
    create_replicated_topic(&topic, 1, 3, &[("min.insync.replicas", "2")]);
    topic
}

/// The broker coordinating consumer groups (the leader of the one
/// partition of `__consumer_offsets`, which Kafka creates when a group
/// first looks for its coordinator).
fn group_coordinator() -> i32 {
    use rdkafka::consumer::Consumer;
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique_topic("g"))
        .create()
        .unwrap();
    let mut coordinator = None;
    assert!(
        wait_until(TIMEOUT, || {
            let mut list = rdkafka::TopicPartitionList::new();
            list.add_partition("any", 0);
            let _ = consumer.committed_offsets(list, Duration::from_secs(5));
            coordinator = consumer
                .fetch_metadata(Some("__consumer_offsets"), Duration::from_secs(5))
                .ok()
                .and_then(|m| Some(m.topics().first()?.partitions().first()?.leader()))
                .filter(|&leader| leader > 0);
            coordinator.is_some()
        }),
        "no group coordinator"
    );
    coordinator.unwrap()
}

/// The Kafka offsets of the buffers the element `name` pushes, in the
/// order it pushes them (kafkasrc sets a buffer's offset to its record's).
fn pushed_offsets(pipeline: &gst::Pipeline, name: &str) -> Arc<Mutex<Vec<u64>>> {
    let offsets = Arc::new(Mutex::new(Vec::new()));
    let seen = offsets.clone();
    pipeline
        .by_name(name)
        .unwrap()
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                seen.lock().unwrap().push(buffer.offset());
            }
            gst::PadProbeReturn::Ok
        })
        .unwrap();
    offsets
}

fn count(offsets: &Mutex<Vec<u64>>) -> usize {
    offsets.lock().unwrap().len()
}

/// Checks, with an independent client, that `topic` holds sequence numbers
/// 0..frames once each and in order, and that each reader pushed every
/// record of it once, in order.
fn assert_exactly_once(topic: &str, frames: u64, readers: &[(&str, &Mutex<Vec<u64>>)]) {
    let records = read_topic(topic);
    let seqs: Vec<u64> = records
        .iter()
        .map(|r| r.header("gst-seq").unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs, (0..frames).collect::<Vec<_>>());
    let offsets: Vec<u64> = records.iter().map(|r| r.offset as u64).collect();
    for (reader, pushed) in readers {
        assert!(
            *pushed.lock().unwrap() == offsets,
            "{reader} pushed {} buffers for {} records: not each record once, in order",
            count(pushed),
            offsets.len()
        );
    }
}

#[test]
fn leader_killed_mid_stream_loses_and_duplicates_nothing() {
    let _serial = serial();
    let cluster = cluster();
    // The broker to kill leads the partition and coordinates the group.
    let doomed = group_coordinator();
    let topic = unique_topic("leader");
    let others: Vec<i32> = (1..=3).filter(|&node| node != doomed).collect();
    create_placed_topic(
        &topic,
        &[doomed, others[0], others[1]],
        &[("min.insync.replicas", "2")],
    );
    const FRAMES: u64 = 450;
    let camera = launch(&format!(
        "videotestsrc is-live=true num-buffers={FRAMES} ! video/x-raw,width=160,height=120,framerate=30/1 ! jpegenc \
         ! kafkasink name=sink topic={topic} bootstrap-servers={}",
        bootstrap()
    ));
    // A private reader, and a consumer group member that is replaced by
    // another while the leader is down.
    let viewer = launch(&format!(
        "kafkasrc name=src topic={topic} bootstrap-servers={} start-from=earliest ! fakesink",
        bootstrap()
    ));
    let group = unique_topic("g");
    let member = || {
        launch(&format!(
            "kafkasrc name=src topic={topic} bootstrap-servers={} group-id={group} start-from=earliest ! fakesink",
            bootstrap()
        ))
    };
    let first_member = member();
    let viewed = pushed_offsets(&viewer, "src");
    let grouped = pushed_offsets(&first_member, "src");
    let camera_bus = camera.bus().unwrap();
    camera.set_state(gst::State::Playing).unwrap();
    viewer.set_state(gst::State::Playing).unwrap();
    first_member.set_state(gst::State::Playing).unwrap();
    assert!(wait_until(TIMEOUT, || stats(&camera, "sink")
        .get::<u64>("records-acked")
        .unwrap()
        > 90
        && count(&grouped) > 90));

    assert_eq!(leader(&topic, 0), doomed);
    assert_eq!(leader("__consumer_offsets", 0), doomed);
    eprintln!("killing broker {doomed}, the leader of {topic}/0 and the group coordinator");
    cluster.node_n("kill-node", doomed);
    let first_stats = stats(&first_member, "src");
    first_member.set_state(gst::State::Null).unwrap();
    let handed_over = count(&grouped);
    let second_member = member();
    // Its buffers follow the first member's in the same list.
    let second_grouped = pushed_offsets(&second_member, "src");
    second_member.set_state(gst::State::Playing).unwrap();

    let end = wait_end(&camera_bus, TIMEOUT);
    assert!(matches!(end, End::Eos), "{end:?}");
    let members_pushed = || count(&grouped) + count(&second_grouped);
    assert!(
        wait_until(TIMEOUT, || count(&viewed) >= FRAMES as usize),
        "the reader pushed {} of {FRAMES}",
        count(&viewed)
    );
    assert!(
        wait_until(TIMEOUT, || members_pushed() >= FRAMES as usize),
        "the group members pushed {} + {} of {FRAMES}",
        count(&grouped),
        count(&second_grouped)
    );
    let sink = stats(&camera, "sink");
    let (src, second_stats) = (stats(&viewer, "src"), stats(&second_member, "src"));
    camera.set_state(gst::State::Null).unwrap();
    viewer.set_state(gst::State::Null).unwrap();
    second_member.set_state(gst::State::Null).unwrap();
    cluster.node_n("start-node", doomed);
    eprintln!(
        "new leader: {}; the first group member pushed {handed_over} records, the second {}",
        leader(&topic, 0),
        count(&second_grouped)
    );

    assert_eq!(sink.get::<u64>("records-acked").unwrap(), FRAMES);
    assert_eq!(sink.get::<u64>("delivery-errors").unwrap(), 0);
    for src in [src, first_stats, second_stats] {
        assert_eq!(src.get::<u64>("duplicates").unwrap(), 0, "{src}");
        assert_eq!(src.get::<u64>("sequence-gaps").unwrap(), 0, "{src}");
    }
    let mut members: Vec<u64> = grouped.lock().unwrap().clone();
    members.extend(second_grouped.lock().unwrap().iter());
    assert_exactly_once(
        &topic,
        FRAMES,
        &[
            ("the reader", &viewed),
            (
                "the group members, one after the other",
                &Mutex::new(members),
            ),
        ],
    );
}

/// Whether `partition` of `topic` has all three brokers in sync.
fn fully_in_sync(topic: &str, partition: i32) -> bool {
    in_sync_replicas(topic, partition) == [1, 2, 3]
}

/// A new frame a viewer received: when, and its `X-Frame-Seq`.
type Received = (Instant, u64);

/// Reads `/video_feed` of `port` part by part until `stop`, noting every
/// new frame (the server resends the last one while no new one comes).
fn watch(port: u16, stop: Arc<AtomicBool>, frames: Arc<Mutex<Vec<Received>>>) {
    let mut stream = PartReader::open(get(port, "/video_feed", ""));
    let mut last = None;
    while !stop.load(Ordering::Relaxed) {
        let part = stream.next();
        let seq: u64 = header(&part, "x-frame-seq").parse().unwrap();
        if last != Some(seq) {
            last = Some(seq);
            frames.lock().unwrap().push((Instant::now(), seq));
        }
    }
}

/// The longest time between two frames of `frames`, and when it began.
fn longest_gap(frames: &[Received]) -> (Duration, Instant) {
    frames
        .windows(2)
        .map(|pair| (pair[1].0 - pair[0].0, pair[0].0))
        .max()
        .unwrap()
}

#[test]
fn rolling_restart_under_a_live_stream_loses_repeats_and_stalls_nothing() {
    let _serial = serial();
    let cluster = cluster();
    let topic = replicated_topic("rolling");
    let camera = launch(&format!(
        "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! jpegenc \
         ! kafkasink name=sink topic={topic} bootstrap-servers={}",
        bootstrap()
    ));
    let viewer = launch(&format!(
        "kafkasrc name=src topic={topic} bootstrap-servers={} group-id={} start-from=earliest \
         ! mjpeghttpsink name=http port=0",
        bootstrap(),
        unique_topic("g")
    ));
    let pushed = pushed_offsets(&viewer, "src");
    let camera_bus = camera.bus().unwrap();
    let viewer_bus = viewer.bus().unwrap();
    camera.set_state(gst::State::Playing).unwrap();
    viewer.set_state(gst::State::Playing).unwrap();
    let port = viewer
        .by_name("http")
        .unwrap()
        .property::<u32>("bound-port") as u16;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(Mutex::new(Vec::new()));
    let client = {
        let (stop, received) = (stop.clone(), received.clone());
        std::thread::spawn(move || watch(port, stop, received))
    };
    let acked = || stats(&camera, "sink").get::<u64>("records-acked").unwrap();
    let new_frames = || received.lock().unwrap().len();
    assert!(
        wait_until(TIMEOUT, || acked() > 60 && new_frames() > 30),
        "acked {}, viewed {}",
        acked(),
        new_frames()
    );
    // A broker frozen by an earlier test may still be catching up.
    assert!(wait_until(TIMEOUT, || fully_in_sync(&topic, 0)
        && fully_in_sync("__consumer_offsets", 0)));

    // Each broker in turn: a clean stop, a start, and back in the ISR of
    // the topic and of the group's offsets before the next one.
    let mut windows = Vec::new();
    for node in 1..=3 {
        eprintln!(
            "stopping broker {node}; leader of {topic}/0: {}, group coordinator: {}",
            leader(&topic, 0),
            leader("__consumer_offsets", 0)
        );
        let began = Instant::now();
        let viewed_before = new_frames();
        cluster.node_n("stop-node", node);
        let stopped = began.elapsed();
        cluster.node_n("start-node", node);
        let serving = began.elapsed();
        assert!(
            wait_until(TIMEOUT, || fully_in_sync(&topic, 0)
                && fully_in_sync("__consumer_offsets", 0)),
            "broker {node} not back in sync: ISR {:?}, offsets ISR {:?}",
            in_sync_replicas(&topic, 0),
            in_sync_replicas("__consumer_offsets", 0)
        );
        let in_sync = began.elapsed();
        let viewed = new_frames() - viewed_before;
        eprintln!(
            "broker {node}: stopped after {stopped:.1?}, serving again after {serving:.1?}, \
             back in the ISR after {in_sync:.1?}; the viewer got {viewed} new frames meanwhile"
        );
        windows.push((node, viewed));
    }
    // A second of stream after the last restart, then the end.
    let acked_after = acked();
    assert!(wait_until(TIMEOUT, || acked() > acked_after + 30));
    camera.send_event(gst::event::Eos::new());
    let end = wait_end(&camera_bus, TIMEOUT);
    let sink = stats(&camera, "sink");
    camera.set_state(gst::State::Null).unwrap();
    assert!(matches!(end, End::Eos), "{end:?}");
    let frames = sink.get::<u64>("records-acked").unwrap();
    assert!(
        wait_until(TIMEOUT, || count(&pushed) >= frames as usize),
        "the viewer's kafkasrc pushed {} of {frames}",
        count(&pushed)
    );
    // The HTTP server numbers its frames from 1: the last one reached the
    // viewer.
    assert!(
        wait_until(TIMEOUT, || received
            .lock()
            .unwrap()
            .last()
            .is_some_and(|&(_, seq)| seq == frames)),
        "the viewer's last frame: {:?}",
        received.lock().unwrap().last().map(|&(_, seq)| seq)
    );
    stop.store(true, Ordering::Relaxed);
    client
        .join()
        .expect("the viewer's HTTP client read the stream to the end");
    let errors: Vec<gst::Message> =
        std::iter::from_fn(|| viewer_bus.pop_filtered(&[gst::MessageType::Error])).collect();
    let src = stats(&viewer, "src");
    viewer.set_state(gst::State::Null).unwrap();

    let received = received.lock().unwrap();
    let (gap, gap_began) = longest_gap(&received);
    let first = received[0].0;
    eprintln!(
        "{frames} frames; the viewer received {} new frames, the longest gap {gap:.2?} \
         (from {:.1?} into the viewing); per restart: {windows:?}",
        received.len(),
        gap_began - first
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(sink.get::<u64>("delivery-errors").unwrap(), 0, "{sink}");
    assert_eq!(src.get::<u64>("duplicates").unwrap(), 0, "{src}");
    assert_eq!(src.get::<u64>("sequence-gaps").unwrap(), 0, "{src}");
    assert_exactly_once(&topic, frames, &[("the viewer's kafkasrc", &pushed)]);
    for (node, viewed) in windows {
        assert!(viewed > 0, "no new frame while broker {node} restarted");
    }
    assert!(
        gap <= MAX_VIEWER_GAP,
        "the viewer went {gap:?} without a new frame"
    );
}

/// The client address of broker `node` (node N is the N-th of the
/// cluster's bootstrap list).
fn node_address(node: i32) -> String {
    bootstrap()
        .split(',')
        .nth(node as usize - 1)
        .unwrap()
        .to_string()
}

/// Whether this process has an established TCP connection to `address`
/// (/proc/self/net/tcp lists every socket of the network namespace: the
/// brokers' own connections too).
fn connected_to(address: &str) -> bool {
    let port = address.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let ours: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect();
    let table = std::fs::read_to_string("/proc/self/net/tcp").unwrap();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let remote_port = fields[2]
            .rsplit(':')
            .next()
            .and_then(|hex| u16::from_str_radix(hex, 16).ok());
        // State 01: established.
        remote_port == Some(port)
            && fields[3] == "01"
            && ours.contains(&format!("socket:[{}]", fields[9]))
    })
}

/// Notes when kafkasrc logs that it found the topic it waited for, until
/// dropped.
struct TopicFound {
    found: Arc<AtomicBool>,
    function: Option<gst::log::DebugLogFunction>,
}

impl TopicFound {
    fn watch() -> TopicFound {
        init();
        gst::log::set_active(true);
        let found = Arc::new(AtomicBool::new(false));
        let seen = found.clone();
        let function = gst::log::add_log_function(move |category, _, _, _, _, _, message| {
            if category.name() == "kafkasrc"
                && message
                    .get()
                    .is_some_and(|text| text.contains("exists now: opening it"))
            {
                seen.store(true, Ordering::Relaxed);
            }
        });
        gst::log::set_threshold_for_name("kafkasrc", gst::DebugLevel::Debug);
        TopicFound {
            found,
            function: Some(function),
        }
    }

    fn found(&self) -> bool {
        self.found.load(Ordering::Relaxed)
    }
}

impl Drop for TopicFound {
    fn drop(&mut self) {
        gst::log::unset_threshold_for_name("kafkasrc");
        if let Some(function) = self.function.take() {
            gst::log::remove_log_function(function);
        }
    }
}

#[test]
fn stop_returns_at_once_while_a_new_topics_leader_is_frozen() {
    let _serial = serial();
    // The scenario needs kafkasrc to see the topic before the controller
    // fences the frozen broker (below). Once, in a fresh root, it saw the
    // topic only 63 s after the freeze (not explained; the frozen broker
    // being the active KRaft controller would do it): such a run proves
    // nothing, and is repeated.
    for attempt in 1..=3 {
        if let Some(stopped) = stop_while_a_new_topics_leader_is_frozen() {
            assert!(stopped < Duration::from_secs(3), "NULL took {stopped:?}");
            return;
        }
        eprintln!("attempt {attempt}: kafkasrc did not see the topic before the fence");
    }
    panic!("in three attempts kafkasrc never saw the topic before its leader was fenced");
}

/// How long NULL took while the leader of a topic kafkasrc had just seen
/// was frozen, or None when kafkasrc saw the topic too late to tell.
fn stop_while_a_new_topics_leader_is_frozen() -> Option<Duration> {
    let cluster = cluster();
    // kafkasrc talks to its bootstrap broker (the group coordinator, which
    // it needs too); the broker to freeze is one it has no connection to,
    // so that it looks for the topic elsewhere and needs that broker only
    // for the topic's offsets.
    let talker = group_coordinator();
    let topic = unique_topic("frozen-leader");
    let found = TopicFound::watch();
    let source = launch(&format!(
        "kafkasrc name=src topic={topic} bootstrap-servers={} ! fakesink",
        node_address(talker)
    ));
    source.set_state(gst::State::Playing).unwrap();
    assert!(wait_until(TIMEOUT, || stats(&source, "src")
        .get::<bool>("waiting-for-topic")
        .unwrap()));
    let frozen = (1..=3)
        .find(|&node| node != talker && !connected_to(&node_address(node)))
        .expect("a broker kafkasrc is not connected to");

    // The topic appears, led by a broker that freezes (SIGSTOP) at once:
    // kafkasrc looks for the topic every 500 ms, and asks its leader for
    // its offsets once it sees it.
    create_placed_topic(&topic, &[frozen], &[]);
    cluster.signal_node(frozen, libc::SIGSTOP);
    let frozen_at = Instant::now();
    // The controller fences a broker silent for 9 s
    // (broker.session.timeout.ms) and the topic is then leaderless: asking
    // for its offsets fails at once, and a stop after that proves nothing.
    let seen = wait_until(Duration::from_secs(8), || found.found());
    let seen_after = frozen_at.elapsed();
    let stopping = Instant::now();
    source.set_state(gst::State::Null).unwrap();
    let stopped = stopping.elapsed();
    cluster.node_n("resume-node", frozen);
    eprintln!(
        "kafkasrc saw the topic: {seen} ({seen_after:?} after broker {frozen}, its leader, froze); NULL took {stopped:?}"
    );
    seen.then_some(stopped)
}

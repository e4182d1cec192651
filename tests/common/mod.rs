// SPDX-License-Identifier: MPL-2.0

//! Test support shared by the integration tests: plugin registration, a real
//! Kafka broker, an independent Kafka client to check what the elements
//! wrote, and pipeline helpers that wait on conditions with deadlines.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{LazyLock, Mutex, Once};
use std::time::{Duration, Instant};

use gst::prelude::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub mod http;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstkafka::plugin_register_static().expect("register the kafka plugin");
    });
}

/// Brokers started by this test binary, stopped when the process exits
/// (also when a test panics) by their KAFKA_HOME.
static STARTED_HOMES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn stop_started_brokers() {
    if let Ok(mut homes) = STARTED_HOMES.lock() {
        for home in homes.drain(..) {
            let _ = kafka_sh(&home, &["stop"]).status();
            let _ = std::fs::remove_dir_all(&home);
        }
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh")
}

fn kafka_sh(home: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(script());
    command.args(args).env("KAFKA_HOME", home);
    command
}

/// The first ports of four runs of [`CLUSTER_NODES`] free ports, for the
/// four listeners of a broker (scripts/kafka.sh gives node N a listener's
/// port + N - 1). Taken below the ephemeral range (32768 and up on Linux),
/// so that no outgoing connection of the tests lands on one of them
/// between this check and the broker's bind, as one did in a cluster test.
fn broker_ports() -> [u16; 4] {
    use std::hash::{BuildHasher, Hasher};
    // Above scripts/test.sh's shared broker (19092 to 20391).
    const FIRST: u16 = 21_000;
    const RUNS: u16 = 4;
    const STRIDE: u16 = 100;
    let span = 32_000 - FIRST - RUNS * STRIDE;
    loop {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let base = FIRST + (random % u64::from(span)) as u16;
        let ports = [0, 1, 2, 3].map(|run| base + run * STRIDE);
        let free = ports.iter().all(|&first| {
            (first..first + CLUSTER_NODES)
                .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        });
        if free {
            return ports;
        }
    }
}

/// Nodes of `scripts/kafka.sh cluster`.
const CLUSTER_NODES: u16 = 3;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Parses a gst-launch description into a pipeline (plugin registered).
pub fn launch(description: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// The element called `name` in `pipeline`, as the type it is (an appsrc,
/// an appsink…).
pub fn element<T: IsA<gst::Element>>(pipeline: &gst::Pipeline, name: &str) -> T {
    pipeline.by_name(name).unwrap().downcast::<T>().unwrap()
}

/// Pushes these buffers (PTS 40 ms apart) through appsrc into a kafkasink
/// (`sink_properties`), then EOS; gives the pipeline and how it ended.
pub fn push_buffers(
    caps: &gst::Caps,
    sink_properties: &str,
    buffers: &[Vec<u8>],
) -> (gst::Pipeline, End) {
    let pipeline = launch(&format!(
        "appsrc name=src format=time ! kafkasink name=sink bootstrap-servers={} {sink_properties}",
        bootstrap()
    ));
    let appsrc = element::<gst_app::AppSrc>(&pipeline, "src");
    appsrc.set_caps(Some(caps));
    let bus = pipeline.bus().unwrap();
    // A failed start posts the error read below.
    let _ = pipeline.set_state(gst::State::Playing);
    for (i, data) in buffers.iter().enumerate() {
        let mut buffer = gst::Buffer::from_mut_slice(data.clone());
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(i as u64 * 40));
        if appsrc.push_buffer(buffer).is_err() {
            break;
        }
    }
    let _ = appsrc.end_of_stream();
    let end = wait_end(&bus, Duration::from_secs(60));
    (pipeline, end)
}

/// The `stats` property of the element called `name` in `pipeline`.
pub fn stats(pipeline: &gst::Pipeline, name: &str) -> gst::Structure {
    pipeline.by_name(name).unwrap().property("stats")
}

/// A broker of this test binary's own, on free ports, through
/// scripts/kafka.sh: for tests that kill, pause and restart it.
pub struct OwnBroker {
    pub home: PathBuf,
    pub bootstrap: String,
}

impl OwnBroker {
    pub fn start() -> OwnBroker {
        OwnBroker::launch("start")
    }

    /// Three brokers on loopback (`scripts/kafka.sh cluster`).
    pub fn cluster() -> OwnBroker {
        OwnBroker::launch("cluster")
    }

    /// A stock broker (topics created on first use, as in Kafka's default
    /// configuration) on `port`, as the tutorial's scripts expect it.
    pub fn stock_at(port: u16) -> OwnBroker {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is taken: stop what listens there (a demo's broker: scripts/kafka.sh stop)"
        );
        OwnBroker::launch_with("start", Some(port), true)
    }

    fn launch(command: &str) -> OwnBroker {
        OwnBroker::launch_with(command, None, false)
    }

    /// Test brokers do not create topics on first use, so that a test that
    /// forgets to create its topic, or one about missing topics, is told.
    /// On `port`, or on free ports when `None`.
    fn launch_with(command: &str, port: Option<u16>, auto_create_topics: bool) -> OwnBroker {
        static REGISTER: Once = Once::new();
        REGISTER.call_once(|| unsafe {
            libc::atexit(stop_started_brokers);
        });
        let home = std::env::temp_dir().join(format!(
            "gst-kafka-test-{}-{}",
            std::process::id(),
            free_port()
        ));
        STARTED_HOMES.lock().unwrap().push(home.clone());
        let ports = broker_ports();
        let output = kafka_sh(&home, &[command])
            .env("KAFKA_PORT", port.unwrap_or(ports[3]).to_string())
            .env("KAFKA_AUTO_CREATE_TOPICS", auto_create_topics.to_string())
            .env("KAFKA_CONTROLLER_PORT", ports[0].to_string())
            .env("KAFKA_SASL_PORT", ports[1].to_string())
            .env("KAFKA_SSL_PORT", ports[2].to_string())
            .output()
            .expect("run scripts/kafka.sh");
        assert!(
            output.status.success(),
            "scripts/kafka.sh start failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        let bootstrap = stdout.lines().last().unwrap().trim().to_string();
        OwnBroker { home, bootstrap }
    }

    /// Runs `scripts/kafka.sh <command> 1`: kill-node, stop-node,
    /// pause-node, resume-node or start-node.
    pub fn node(&self, command: &str) {
        self.node_n(command, 1);
    }

    pub fn node_n(&self, command: &str, node: i32) {
        let status = kafka_sh(&self.home, &[command, &node.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "scripts/kafka.sh {command} {node} failed");
    }

    /// Sends `signal` to node `node` at once (`node_n` runs a script, which
    /// takes tens of milliseconds).
    pub fn signal_node(&self, node: i32, signal: libc::c_int) {
        let pid_file = self.home.join(format!("node{node}/broker.pid"));
        let pid: libc::pid_t = std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: a signal to the broker process this binary started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// The SASL_PLAINTEXT listener of node 1: PLAIN (alice / alice-secret)
    /// and SCRAM-SHA-512 (bob / bob-secret).
    pub fn sasl_bootstrap(&self) -> String {
        self.listener("KAFKA_SASL_PORT")
    }

    /// The SSL listener of node 1; its certificate is signed by `ca()`.
    pub fn ssl_bootstrap(&self) -> String {
        self.listener("KAFKA_SSL_PORT")
    }

    /// The certificate of the throwaway CA of the SSL listener (PEM).
    pub fn ca(&self) -> PathBuf {
        self.home.join("tls/ca.pem")
    }

    /// 127.0.0.1 and the port `variable` names in KAFKA_HOME/ports.
    fn listener(&self, variable: &str) -> String {
        let ports = std::fs::read_to_string(self.home.join("ports")).unwrap();
        let prefix = format!("{variable}=");
        let port = ports
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{variable} in KAFKA_HOME/ports"));
        format!("127.0.0.1:{port}")
    }

    pub fn stop(&self) {
        let _ = kafka_sh(&self.home, &["stop"]).status();
    }
}

static OWN_BROKER: std::sync::OnceLock<OwnBroker> = std::sync::OnceLock::new();

/// This test binary's own broker, started on first use.
pub fn own_broker() -> &'static OwnBroker {
    OWN_BROKER.get_or_init(OwnBroker::start)
}

/// Makes `broker` (e.g. a cluster) this binary's own broker.
pub fn use_own_broker(broker: OwnBroker) -> &'static OwnBroker {
    let _ = OWN_BROKER.set(broker);
    OWN_BROKER.get().unwrap()
}

/// The bootstrap address of a real Kafka broker: this binary's own broker
/// once a test asked for it, else `KAFKA_BOOTSTRAP` when set, else an own
/// broker started now.
pub fn bootstrap() -> &'static str {
    static FROM_ENV: LazyLock<Option<String>> =
        LazyLock::new(|| std::env::var("KAFKA_BOOTSTRAP").ok());
    if let Some(own) = OWN_BROKER.get() {
        return &own.bootstrap;
    }
    match &*FROM_ENV {
        Some(address) => address,
        None => &own_broker().bootstrap,
    }
}

/// The Python of the tests' peers (kafka-python, OpenCV, Flask):
/// `GST_KAFKA_PYTHON`, or the environment scripts/python-env.sh makes.
pub fn python() -> &'static str {
    static PYTHON: LazyLock<String> = LazyLock::new(|| {
        if let Ok(python) = std::env::var("GST_KAFKA_PYTHON") {
            return python;
        }
        let output =
            Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/python-env.sh"))
                .output()
                .expect("run scripts/python-env.sh");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    });
    &PYTHON
}

/// A topic name no other test uses.
pub fn unique_topic(name: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{name}-{}-{n}-{}",
        std::process::id(),
        nanos % 1_000_000_000
    )
}

fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap());
    config
}

pub fn create_topic(topic: &str, partitions: i32, config: &[(&str, &str)]) {
    create_replicated_topic(topic, partitions, 1, config);
}

pub fn create_replicated_topic(
    topic: &str,
    partitions: i32,
    replicas: i32,
    config: &[(&str, &str)],
) {
    create_topic_with(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(replicas)),
        config,
    );
}

/// A topic of one partition on the brokers `replicas`, the first one its
/// preferred leader.
pub fn create_placed_topic(topic: &str, replicas: &[i32], config: &[(&str, &str)]) {
    create_topic_with(
        NewTopic::new(topic, 1, TopicReplication::Variable(&[replicas])),
        config,
    );
}

fn create_topic_with(new_topic: NewTopic<'_>, config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = client_config().create().unwrap();
    let mut new_topic = new_topic.set("max.message.bytes", "16777216");
    for (key, value) in config {
        new_topic = new_topic.set(key, value);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = rt
        .block_on(admin.create_topics([&new_topic], &AdminOptions::new()))
        .unwrap();
    for result in results {
        result.expect("topic created");
    }
}

pub fn partition_count(topic: &str) -> usize {
    let consumer: BaseConsumer = client_config().create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0].partitions().len()
}

/// The broker leading `partition` of `topic`.
pub fn leader(topic: &str, partition: i32) -> i32 {
    let consumer: BaseConsumer = client_config().create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .unwrap()
        .leader()
}

/// The brokers in the ISR of `partition` of `topic` (in-sync replicas).
pub fn in_sync_replicas(topic: &str, partition: i32) -> Vec<i32> {
    let consumer: BaseConsumer = client_config().create().unwrap();
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)) else {
        return Vec::new();
    };
    let mut isr = metadata
        .topics()
        .first()
        .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
        .map(|p| p.isr().to_vec())
        .unwrap_or_default();
    isr.sort();
    isr
}

/// The directory of the libgstkafka.so built with this test, for
/// gst-launch-1.0 child processes.
pub fn plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libgstkafka.so").exists(),
        "no libgstkafka.so in {}",
        dir.display()
    );
    dir
}

/// A record as an independent client (rdkafka, not our elements) sees it.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
    }
}

/// Every record of `topic` present now, partition by partition, in offset order.
pub fn read_topic(topic: &str) -> Vec<Record> {
    read_topic_at(bootstrap(), topic)
}

/// A consumer of `topic` at `bootstrap` assigned to every partition from
/// the beginning, and the number of records the partitions hold.
fn assigned_reader(bootstrap: &str, topic: &str) -> KafkaResult<(BaseConsumer, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "gst-kafka-tests-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata.topics()[0].partitions().len() as i32;
    if partitions == 0 {
        return Err(KafkaError::MetadataFetch(
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    let mut list = TopicPartitionList::new();
    let mut records = 0;
    for partition in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        records += high - low;
        list.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    Ok((consumer, records))
}

/// Every record of `topic` at the brokers `bootstrap`, as `read_topic`.
pub fn read_topic_at(bootstrap: &str, topic: &str) -> Vec<Record> {
    // A broker its controller fenced (frozen past its session timeout)
    // names no leader for a moment after it is back, and a client that
    // asked then keeps that answer: "Unknown partition". A new one asks
    // again.
    let mut reader = Err(KafkaError::Canceled);
    wait_until(Duration::from_secs(30), || {
        reader = assigned_reader(bootstrap, topic);
        reader.is_ok()
    });
    let (consumer, mut remaining) = reader.unwrap_or_else(|err| panic!("reading {topic}: {err}"));
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while remaining > 0 {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.unwrap();
        remaining -= 1;
        records.push(Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().unwrap_or_default().to_vec(),
            timestamp_ms: message.timestamp().to_millis(),
            headers: message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// Sum of the high watermarks of every partition: the records written so far.
pub fn record_count(topic: &str) -> i64 {
    let consumer: BaseConsumer = client_config().create().unwrap();
    (0..partition_count(topic) as i32)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            high - low
        })
        .sum()
}

/// A plain record (no headers) to produce at a given time.
pub struct TimedRecord {
    pub partition: i32,
    pub key: Option<String>,
    pub timestamp_ms: i64,
    pub value: Vec<u8>,
}

/// Produces `records` with an independent client, each with its partition,
/// key and record timestamp.
pub fn produce_timed(topic: &str, records: &[TimedRecord]) {
    let producer: BaseProducer = client_config().create().unwrap();
    for record in records {
        let mut base = BaseRecord::<str, _>::to(topic)
            .payload(&record.value)
            .partition(record.partition)
            .timestamp(record.timestamp_ms);
        if let Some(key) = &record.key {
            base = base.key(key.as_str());
        }
        producer.send(base).map_err(|(err, _)| err).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// Produces plain records (no headers) with an independent client, as the
/// tutorial's kafka-python producer does.
pub fn produce_plain(topic: &str, values: &[Vec<u8>]) {
    let producer: BaseProducer = client_config().create().unwrap();
    for value in values {
        producer
            .send(BaseRecord::<(), _>::to(topic).payload(value))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

/// `len` bytes no compressor or run-length trick could shrink.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// How a pipeline run ended.
#[derive(Debug)]
pub enum End {
    Eos,
    Error(gst::glib::Error, Option<String>),
}

/// Plays `pipeline` until EOS or an error, for at most `timeout`; always
/// leaves it in NULL.
pub fn run(pipeline: &gst::Pipeline, timeout: Duration) -> End {
    let bus = pipeline.bus().unwrap();
    // A failed state change also posts an error message, read below.
    let _ = pipeline.set_state(gst::State::Playing);
    let end = wait_end(&bus, timeout);
    pipeline.set_state(gst::State::Null).unwrap();
    end
}

impl End {
    /// The end `message` is, if it is EOS or an error.
    fn of(message: &gst::Message) -> Option<End> {
        match message.view() {
            gst::MessageView::Eos(_) => Some(End::Eos),
            gst::MessageView::Error(err) => {
                Some(End::Error(err.error(), err.debug().map(|d| d.to_string())))
            }
            _ => None,
        }
    }
}

/// Waits for EOS or an error on `bus`, discarding every other message on
/// the way (a filtered pop does): see until_end to keep them.
pub fn wait_end(bus: &gst::Bus, timeout: Duration) -> End {
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap_or_else(|| panic!("no EOS or error within {timeout:?}"));
    End::of(&message).expect("popped EOS or an error")
}

/// Every message `bus` gets before EOS or an error, and that end, for at
/// most `timeout`: the messages before the end are kept, for counting.
pub fn until_end(bus: &gst::Bus, timeout: Duration) -> (Vec<gst::Message>, End) {
    let deadline = Instant::now() + timeout;
    let mut before = Vec::new();
    loop {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("no EOS or error within {timeout:?}"));
        let Some(message) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64))
        else {
            continue;
        };
        match End::of(&message) {
            Some(end) => return (before, end),
            None => before.push(message),
        }
    }
}

pub fn expect_error(end: End) -> String {
    match end {
        End::Error(err, _) => err.message().to_string(),
        End::Eos => panic!("expected an error, got EOS"),
    }
}

/// Whether something listens on 127.0.0.1:`port`. A connect that succeeds
/// is not proof: on an ephemeral port with no listener, a socket can
/// connect to itself.
pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port))
        .is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok())
}

/// Polls `condition` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        // Its process group too, when it leads one (a Flask app's reloader).
        // SAFETY: a plain signal to a process (group) id of our own child.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The example test camera, built next to this test binary.
pub fn test_camera_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target_profile = exe.parent().unwrap().parent().unwrap();
    let binary = target_profile.join("examples").join("test-camera");
    if !binary.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--example", "test-camera"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    binary
}

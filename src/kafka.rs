// SPDX-License-Identifier: MPL-2.0

//! Kafka plumbing shared by `kafkasink` and `kafkasrc`: the connection
//! settings every client has, turning them into a librdkafka configuration,
//! keeping their secrets out of sight, the client context that carries
//! librdkafka's logs, statistics and errors to the element, and the topic
//! check done at start.

use std::fmt;
use std::path::Path;
use std::sync::LazyLock;
use std::sync::Mutex;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use rdkafka::client::Client;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};

use crate::throttle::Throttle;
use crate::wireformat::{self, RecordMeta};

pub const DEFAULT_BOOTSTRAP_SERVERS: &str = "localhost:9092";
pub const DEFAULT_STATISTICS_INTERVAL_MS: u32 = 0;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 10_000;
/// Large enough for a 4K JPEG; Kafka's own default is 1 MB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u32 = 16 * 1024 * 1024;
/// The first wait before connecting to a broker again (librdkafka's is
/// 100 ms), doubled on every failure up to `reconnect.backoff.max.ms`
/// (10 s). A new client learns its broker from the bootstrap connection's
/// metadata and may not connect to it before this: librdkafka's 100 ms held
/// kafkasink's start back about 50 ms and put replay seeks' p99 at 56-71 ms
/// (docs/design.md, "Start-up").
pub const RECONNECT_BACKOFF_MS: u32 = 20;

/// librdkafka's own log lines.
pub static RDKAFKA_CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "rdkafka",
        gst::DebugColorFlags::empty(),
        Some("librdkafka log lines"),
    )
});

/// Connection settings that both Kafka elements expose as properties.
#[derive(Clone)]
pub struct ClientSettings {
    pub bootstrap_servers: String,
    pub client_id: Option<String>,
    pub config: Option<gst::Structure>,
    pub config_file: Option<String>,
    pub statistics_interval_ms: u32,
    pub connect_timeout_ms: u32,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            bootstrap_servers: DEFAULT_BOOTSTRAP_SERVERS.into(),
            client_id: None,
            config: None,
            config_file: None,
            statistics_interval_ms: DEFAULT_STATISTICS_INTERVAL_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
        }
    }
}

/// Shows `config` with its secrets redacted, so that logging the settings
/// cannot leak a password.
impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("config", &self.config.as_ref().map(redact))
            .field("config_file", &self.config_file)
            .field("statistics_interval_ms", &self.statistics_interval_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish()
    }
}

/// librdkafka's aliases (`_RK_C_ALIAS` in its rdkafka_conf.c) and the
/// property each stands for.
const LIBRDKAFKA_ALIASES: &[(&str, &str)] = &[
    ("bootstrap.servers", "metadata.broker.list"),
    ("max.in.flight", "max.in.flight.requests.per.connection"),
    ("sasl.mechanism", "sasl.mechanisms"),
    (
        "sasl.oauthbearer.client.credentials.client.id",
        "sasl.oauthbearer.client.id",
    ),
    (
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.client.secret",
    ),
    ("max.partition.fetch.bytes", "fetch.message.max.bytes"),
    ("linger.ms", "queue.buffering.max.ms"),
    ("retries", "message.send.max.retries"),
    ("compression.type", "compression.codec"),
    ("acks", "request.required.acks"),
    ("delivery.timeout.ms", "message.timeout.ms"),
    ("enable.auto.commit", "auto.commit.enable"),
];

/// The librdkafka property a name stands for: itself unless an alias, and
/// without the `topic.` prefix librdkafka also accepts.
fn canonical_key(key: &str) -> &str {
    let key = key.strip_prefix("topic.").unwrap_or(key);
    LIBRDKAFKA_ALIASES
        .iter()
        .find_map(|&(alias, property)| (alias == key).then_some(property))
        .unwrap_or(key)
}

/// A boolean setting as librdkafka reads it (`true`, `t`, `1`, any case),
/// or None when not set or not a boolean.
pub fn bool_setting(config: &ClientConfig, key: &str) -> Option<bool> {
    let value = setting(config, key)?.trim();
    if ["true", "t", "1"]
        .iter()
        .any(|t| value.eq_ignore_ascii_case(t))
    {
        Some(true)
    } else if ["false", "f", "0"]
        .iter()
        .any(|f| value.eq_ignore_ascii_case(f))
    {
        Some(false)
    } else {
        None
    }
}

/// Sets `key`, first removing whatever an earlier source set under another
/// name of the same property: rust-rdkafka hands librdkafka its settings in
/// hash-map order, so with both `linger.ms` and `queue.buffering.max.ms`
/// present either could win.
pub fn set_overriding(config: &mut ClientConfig, key: &str, value: &str) {
    let property = canonical_key(key);
    let earlier: Vec<String> = config
        .config_map()
        .into_keys()
        .filter(|name| *name != key && canonical_key(name) == property)
        .map(str::to_owned)
        .collect();
    for name in earlier {
        config.remove(&name);
    }
    config.set(key, value);
}

/// The value `config` gives a property under any of its names.
pub fn setting<'a>(config: &'a ClientConfig, key: &str) -> Option<&'a str> {
    let property = canonical_key(key);
    config
        .config_map()
        .into_iter()
        .find_map(|(name, value)| (canonical_key(name) == property).then_some(value))
}

impl ClientSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.into())
    }

    /// The librdkafka configuration: the element's own `defaults` first, then
    /// the properties above, then `config-file`, then `config` (each later
    /// source overrides an earlier one).
    pub fn client_config(
        &self,
        defaults: &[(&str, String)],
    ) -> Result<ClientConfig, gst::ErrorMessage> {
        let mut config = ClientConfig::new();
        for (key, value) in defaults {
            set_overriding(&mut config, key, value);
        }
        set_overriding(&mut config, "bootstrap.servers", &self.bootstrap_servers);
        if let Some(client_id) = &self.client_id {
            set_overriding(&mut config, "client.id", client_id);
        }
        if self.statistics_interval_ms > 0 {
            set_overriding(
                &mut config,
                "statistics.interval.ms",
                &self.statistics_interval_ms.to_string(),
            );
        }
        if let Some(path) = &self.config_file {
            for (key, value) in read_properties_file(Path::new(path))? {
                set_overriding(&mut config, &key, &value);
            }
        }
        if let Some(structure) = &self.config {
            for (key, value) in structure.iter() {
                let value = match value.get::<String>() {
                    Ok(text) => text,
                    Err(_) => value.serialize().map(|s| s.to_string()).map_err(|_| {
                        gst::error_msg!(
                            gst::LibraryError::Settings,
                            ("config field {key} has a value that cannot be written as text")
                        )
                    })?,
                };
                set_overriding(&mut config, key.as_str(), &value);
            }
        }
        // What the client is created with; rust-rdkafka sanitizes the
        // values it knows to be secret, redact() the ones we do.
        let shown: Vec<String> = config
            .config_map()
            .into_iter()
            .map(|(key, value)| {
                let value = if is_secret_key(key) { REDACTED } else { value };
                format!("{key}={value}")
            })
            .collect();
        gst::debug!(RDKAFKA_CAT, "librdkafka settings: {}", shown.join(", "));
        if let Some(structure) = &self.config {
            gst::debug!(RDKAFKA_CAT, "config property: {}", redact(structure));
        }
        // rust-rdkafka applies its own log level after creating the client,
        // taken from the `log` crate, which nothing here sets up: librdkafka
        // would log errors only, and a `debug` setting would go silent.
        config.set_log_level(librdkafka_log_level(
            RDKAFKA_CAT.threshold(),
            setting(&config, "debug").is_some(),
        ));
        Ok(config)
    }
}

/// The librdkafka log level that lets through what the `rdkafka` debug
/// category shows (KafkaContext::log maps the levels back), everything
/// when librdkafka's `debug` contexts are asked for.
fn librdkafka_log_level(threshold: gst::DebugLevel, debug: bool) -> RDKafkaLogLevel {
    if debug || threshold >= gst::DebugLevel::Log {
        RDKafkaLogLevel::Debug
    } else if threshold >= gst::DebugLevel::Debug {
        RDKafkaLogLevel::Info
    } else if threshold >= gst::DebugLevel::Info {
        RDKafkaLogLevel::Notice
    } else if threshold >= gst::DebugLevel::Warning {
        RDKafkaLogLevel::Warning
    } else {
        RDKafkaLogLevel::Error
    }
}

/// The properties of [`ClientSettings`], for both elements' property lists.
pub fn client_properties() -> Vec<glib::ParamSpec> {
    vec![
        glib::ParamSpecString::builder("bootstrap-servers")
            .nick("Bootstrap servers")
            .blurb("Comma-separated host:port list of Kafka brokers")
            .default_value(Some(DEFAULT_BOOTSTRAP_SERVERS))
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("client-id")
            .nick("Client id")
            .blurb("Client id shown in broker logs and quotas (default: gst-kafkasink / gst-kafkasrc)")
            .mutable_ready()
            .build(),
        glib::ParamSpecBoxed::builder::<gst::Structure>("config")
            .nick("librdkafka configuration")
            .blurb("Any librdkafka property, e.g. \"config,security.protocol=SASL_SSL,sasl.mechanism=PLAIN\"; overrides config-file and the other properties. \
                    Values of secret keys (any key containing password, passphrase, secret, token, credential, private.key, \
                    oauthbearer, sasl.jaas.config or ssl.key.pem) read back as ***: keep secrets in config-file, which ps does not show")
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("config-file")
            .nick("Configuration file")
            .blurb("Java properties file of librdkafka/Kafka client settings, as used by Kafka's command-line tools")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("statistics-interval-ms")
            .nick("Statistics interval")
            .blurb("Post librdkafka statistics as kafka-statistics element messages this often (0: never)")
            .maximum(86_400_000)
            .default_value(DEFAULT_STATISTICS_INTERVAL_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("connect-timeout-ms")
            .nick("Connect timeout")
            .blurb("Milliseconds start waits for the brokers to answer before failing")
            .minimum(100)
            .default_value(DEFAULT_CONNECT_TIMEOUT_MS)
            .mutable_ready()
            .build(),
    ]
}

/// Sets one of [`client_properties`]; false if `pspec` is not one of them.
pub fn set_client_property(
    settings: &mut ClientSettings,
    value: &glib::Value,
    pspec: &glib::ParamSpec,
) -> bool {
    match pspec.name() {
        "bootstrap-servers" => {
            settings.bootstrap_servers = value
                .get::<Option<String>>()
                .expect("type checked upstream")
                .unwrap_or_else(|| DEFAULT_BOOTSTRAP_SERVERS.into())
        }
        "client-id" => settings.client_id = value.get().expect("type checked upstream"),
        "config" => settings.config = value.get().expect("type checked upstream"),
        "config-file" => settings.config_file = value.get().expect("type checked upstream"),
        "statistics-interval-ms" => {
            settings.statistics_interval_ms = value.get().expect("type checked upstream")
        }
        "connect-timeout-ms" => {
            settings.connect_timeout_ms = value.get().expect("type checked upstream")
        }
        _ => return false,
    }
    true
}

/// Reads one of [`client_properties`]; `None` if `pspec` is not one of them.
pub fn client_property(settings: &ClientSettings, pspec: &glib::ParamSpec) -> Option<glib::Value> {
    Some(match pspec.name() {
        "bootstrap-servers" => settings.bootstrap_servers.to_value(),
        "client-id" => settings.client_id.to_value(),
        "config" => settings.config.as_ref().map(redact).to_value(),
        "config-file" => settings.config_file.to_value(),
        "statistics-interval-ms" => settings.statistics_interval_ms.to_value(),
        "connect-timeout-ms" => settings.connect_timeout_ms.to_value(),
        _ => return None,
    })
}

/// Parts of librdkafka setting names whose values are secrets (passwords,
/// private keys, OAuth client secrets and tokens, JAAS configurations with
/// passwords inside). Matched case-insensitively anywhere in the key.
const SECRET_KEY_PARTS: [&str; 9] = [
    "password",
    "passphrase",
    "secret",
    "token",
    "credential",
    "private.key",
    "oauthbearer",
    "sasl.jaas.config",
    "ssl.key.pem",
];

/// What a secret value reads back as.
pub const REDACTED: &str = "***";

/// Whether the value of the librdkafka setting `key` is a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// `config` as it may be shown (property reads, gst-inspect, dot dumps,
/// logs): every secret value replaced by [`REDACTED`].
pub fn redact(config: &gst::Structure) -> gst::Structure {
    let mut shown = config.clone();
    let secrets: Vec<glib::GString> = config
        .fields()
        .filter(|key| is_secret_key(key))
        .map(|key| key.into())
        .collect();
    for key in secrets {
        shown.set(key.as_str(), REDACTED);
    }
    shown
}

/// Reads a Java properties file as used by Kafka's command-line tools
/// (`--producer.config`, `--command-config`): `key=value`, `key: value` or
/// `key value`, comments starting with `#` or `!`, `\` continues a line.
pub fn read_properties_file(path: &Path) -> Result<Vec<(String, String)>, gst::ErrorMessage> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        gst::error_msg!(
            gst::ResourceError::OpenRead,
            ("cannot read config-file {}: {err}", path.display())
        )
    })?;
    Ok(parse_properties(&text))
}

fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut entries = Vec::new();
    let mut logical = String::new();
    for line in text.lines() {
        let line = line.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(continued) => {
                logical.push_str(continued);
                continue;
            }
            None => logical.push_str(line),
        }
        let entry = std::mem::take(&mut logical);
        let split = entry.find(['=', ':', ' ', '\t']).unwrap_or(entry.len());
        let key = entry[..split].trim();
        let value = entry[split..]
            .trim_start_matches([' ', '\t'])
            .trim_start_matches(['=', ':'])
            .trim();
        if !key.is_empty() {
            entries.push((key.to_string(), value.to_string()));
        }
    }
    entries
}

/// Turns a client creation failure into an error that names what to fix.
pub fn config_error(err: KafkaError) -> gst::ErrorMessage {
    match err {
        KafkaError::ClientConfig(_, description, key, _) => gst::error_msg!(
            gst::LibraryError::Settings,
            ("invalid librdkafka setting {key:?}: {description}")
        ),
        KafkaError::ClientCreation(reason) => gst::error_msg!(
            gst::LibraryError::Settings,
            ("cannot create the Kafka client: {reason}")
        ),
        other => gst::error_msg!(
            gst::LibraryError::Settings,
            ("cannot create the Kafka client: {other}")
        ),
    }
}

/// What the broker said about a topic at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub partitions: usize,
    /// The brokers the metadata named.
    pub brokers: Vec<i32>,
}

#[derive(Debug)]
pub enum TopicError {
    Missing,
    Unreachable(String),
    Denied(String),
    Other(String),
}

/// Asks the brokers about `topic`, within `timeout`. This is a blocking
/// librdkafka call: only for `start()`.
pub fn describe_topic<C: rdkafka::ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<TopicInfo, TopicError> {
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|err| match err {
            KafkaError::MetadataFetch(
                code @ (RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::Resolve),
            ) => TopicError::Unreachable(code.to_string()),
            KafkaError::MetadataFetch(
                code @ (RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed),
            ) => TopicError::Denied(code.to_string()),
            other => TopicError::Other(other.to_string()),
        })?;
    let Some(entry) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(TopicError::Missing);
    };
    match entry.error().map(RDKafkaErrorCode::from) {
        None if !entry.partitions().is_empty() => Ok(TopicInfo {
            partitions: entry.partitions().len(),
            brokers: metadata.brokers().iter().map(|b| b.id()).collect(),
        }),
        None | Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Err(TopicError::Missing),
        Some(code @ RDKafkaErrorCode::TopicAuthorizationFailed) => {
            Err(TopicError::Denied(code.to_string()))
        }
        Some(code) => Err(TopicError::Other(code.to_string())),
    }
}

/// The error for a failed start-up topic check. `detail` is librdkafka's
/// latest client-wide error, which tells why a broker connection failed.
pub fn topic_error(
    bootstrap: &str,
    topic: &str,
    err: TopicError,
    detail: Option<String>,
) -> gst::ErrorMessage {
    // A rejected login shows as a transport failure; the detail says why.
    let authentication = detail.as_deref().is_some_and(|d| {
        d.contains("SASL authentication error") || d.contains("Authentication failed")
    });
    // So does a TLS handshake that failed: an untrusted broker certificate,
    // or TLS spoken to a plaintext listener.
    let tls = detail.as_deref().is_some_and(|d| {
        d.contains("certificate verify failed") || d.contains("SSL handshake failed")
    });
    let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
    match err {
        TopicError::Unreachable(_) if authentication => gst::error_msg!(
            gst::ResourceError::NotAuthorized,
            ("Kafka at {bootstrap} refused the credentials: authentication failed{detail}")
        ),
        TopicError::Unreachable(_) if tls => gst::error_msg!(
            gst::ResourceError::NotAuthorized,
            ("TLS to Kafka at {bootstrap} failed: the broker's certificate is not trusted; check ssl.ca.location{detail}")
        ),
        TopicError::Missing => gst::error_msg!(
            gst::ResourceError::NotFound,
            ("topic {topic} does not exist")
        ),
        TopicError::Unreachable(reason) => gst::error_msg!(
            gst::ResourceError::OpenRead,
            ("cannot reach Kafka at {bootstrap}: {reason}{detail}")
        ),
        TopicError::Denied(reason) => gst::error_msg!(
            gst::ResourceError::NotAuthorized,
            ("Kafka at {bootstrap} refused access to topic {topic}: {reason}{detail}")
        ),
        TopicError::Other(reason) => gst::error_msg!(
            gst::ResourceError::Failed,
            ("cannot look up topic {topic} at {bootstrap}: {reason}{detail}")
        ),
    }
}

/// The librdkafka client context of every client the elements create
/// (producer, consumer, admin client): log lines go to the `rdkafka` debug
/// category, statistics become element messages, and client-wide errors (a
/// broker going away) rate-limited warnings. `extra` is what one kind of
/// client adds, e.g. the producer's delivery accounting.
#[derive(Debug)]
pub struct KafkaContext<T = ()> {
    element: glib::WeakRef<gst::Element>,
    warnings: Throttle,
    last_error: Mutex<Option<String>>,
    pub extra: T,
}

/// librdkafka repeats connection errors on every retry; one warning per
/// interval is enough for an application to react.
const CLIENT_WARNING_INTERVAL: Duration = Duration::from_secs(2);

impl KafkaContext {
    pub fn new(element: &gst::Element) -> Self {
        KafkaContext::with(element, ())
    }
}

impl<T> KafkaContext<T> {
    pub fn with(element: &gst::Element, extra: T) -> Self {
        KafkaContext {
            element: element.downgrade(),
            warnings: Throttle::new(CLIENT_WARNING_INTERVAL),
            last_error: Mutex::new(None),
            extra,
        }
    }

    /// The reason librdkafka gave for its latest client-wide error, which
    /// says more than an operation's error code (e.g. why SASL failed).
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_last_error(&self, reason: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_string());
    }
}

impl<T: Send + Sync + 'static> rdkafka::ClientContext for KafkaContext<T> {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // Connection failures are logged at once from librdkafka's threads,
        // while its error callback waits for the client to be polled.
        if matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
        ) {
            self.set_last_error(message);
        }
        let level = match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => gst::DebugLevel::Error,
            RDKafkaLogLevel::Warning => gst::DebugLevel::Warning,
            RDKafkaLogLevel::Notice => gst::DebugLevel::Info,
            RDKafkaLogLevel::Info => gst::DebugLevel::Debug,
            RDKafkaLogLevel::Debug => gst::DebugLevel::Log,
        };
        match self.element.upgrade() {
            Some(element) => {
                gst::log_with_level!(RDKAFKA_CAT, level, obj = element, "{facility}: {message}")
            }
            None => gst::log_with_level!(RDKAFKA_CAT, level, "{facility}: {message}"),
        }
    }

    fn stats_raw(&self, json: &[u8]) {
        let Some(element) = self.element.upgrade() else {
            return;
        };
        let json = String::from_utf8_lossy(json);
        let structure = gst::Structure::builder("kafka-statistics")
            .field("json", json.as_ref())
            .build();
        let _ = element.post_message(
            gst::message::Element::builder(structure)
                .src(&element)
                .build(),
        );
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.set_last_error(reason);
        let Some(element) = self.element.upgrade() else {
            return;
        };
        gst::warning!(RDKAFKA_CAT, obj = element, "{error}: {reason}");
        if self.warnings.allow().is_none() {
            return;
        }
        gst::element_warning!(
            element,
            gst::ResourceError::Failed,
            ("Kafka client problem: {error}"),
            ["{reason}"]
        );
    }
}

/// A consumer needs nothing beyond the shared context.
impl rdkafka::consumer::ConsumerContext for KafkaContext {}

/// A random 64-bit value for ids, from the standard library's hasher keys.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// The headers of a record as kafkasink writes them (docs/wire-format.md),
/// when they parse.
pub fn record_meta<'a>(message: &'a BorrowedMessage) -> Option<RecordMeta<'a>> {
    let headers = message.headers();
    wireformat::decode(
        headers
            .iter()
            .flat_map(|headers| headers.iter())
            .map(|header| (header.key, header.value)),
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_like_kafka_tools() {
        let text = "# comment\n! also\n\nsecurity.protocol=SASL_PLAINTEXT\n  sasl.mechanism : PLAIN\n\
                    sasl.username alice\nsasl.password=a=b\\\n  c\nempty=\n";
        assert_eq!(
            parse_properties(text),
            vec![
                ("security.protocol".into(), "SASL_PLAINTEXT".into()),
                ("sasl.mechanism".into(), "PLAIN".into()),
                ("sasl.username".into(), "alice".into()),
                ("sasl.password".into(), "a=bc".into()),
                ("empty".into(), String::new()),
            ]
        );
    }

    #[test]
    fn secrets_are_redacted_and_the_rest_is_kept() {
        gst::init().unwrap();
        let config = gst::Structure::builder("config")
            .field("sasl.username", "alice")
            .field("sasl.password", "alice-secret")
            .field("ssl.key.password", "k")
            .field("SSL.Keystore.Password", "k")
            .field("sasl.oauthbearer.client.secret", "s")
            .field("sasl.oauthbearer.config", "principal=p secret=s")
            .field("sasl.jaas.config", "... password=\"p\";")
            .field("ssl.key.pem", "-----BEGIN PRIVATE KEY-----")
            .field("linger.ms", 5i32)
            .build();
        let shown = redact(&config);
        assert_eq!(shown.get::<&str>("sasl.username"), Ok("alice"));
        assert_eq!(shown.get::<i32>("linger.ms"), Ok(5));
        for key in config
            .fields()
            .filter(|k| !["sasl.username", "linger.ms"].contains(&k.as_str()))
        {
            assert_eq!(shown.get::<&str>(key), Ok(REDACTED), "{key}");
        }
        let settings = ClientSettings {
            config: Some(config),
            ..Default::default()
        };
        let debug = format!("{settings:?}");
        assert!(
            debug.contains("alice") && !debug.contains("alice-secret"),
            "{debug}"
        );
    }

    #[test]
    fn a_later_source_overrides_an_earlier_one_under_another_name_of_the_property() {
        gst::init().unwrap();
        let settings = ClientSettings {
            config: Some(
                gst::Structure::builder("config")
                    .field("queue.buffering.max.ms", "9")
                    .field("compression.type", "zstd")
                    .field("max.in.flight", "5")
                    .build(),
            ),
            ..Default::default()
        };
        let config = settings
            .client_config(&[
                ("linger.ms", "1".into()),
                ("compression.codec", "none".into()),
                ("max.in.flight.requests.per.connection", "4".into()),
                ("acks", "-1".into()),
            ])
            .unwrap();
        let map = config.config_map();
        assert_eq!(map.get("queue.buffering.max.ms").copied(), Some("9"));
        assert!(!map.contains_key("linger.ms"), "{map:?}");
        assert_eq!(map.get("compression.type").copied(), Some("zstd"));
        assert!(!map.contains_key("compression.codec"), "{map:?}");
        assert_eq!(map.get("max.in.flight").copied(), Some("5"));
        assert!(!map.contains_key("max.in.flight.requests.per.connection"));
        // Untouched defaults stay; a setting is found under either name.
        assert_eq!(setting(&config, "request.required.acks"), Some("-1"));
        assert_eq!(setting(&config, "linger.ms"), Some("9"));
        assert_eq!(setting(&config, "enable.idempotence"), None);
        // librdkafka's `topic.` prefix names the same property.
        let mut prefixed = ClientConfig::new();
        set_overriding(&mut prefixed, "acks", "1");
        set_overriding(&mut prefixed, "topic.request.required.acks", "all");
        assert_eq!(
            prefixed.config_map().len(),
            1,
            "{:?}",
            prefixed.config_map()
        );
        assert_eq!(setting(&prefixed, "acks"), Some("all"));
    }

    #[test]
    fn librdkafka_logs_what_the_rdkafka_category_shows() {
        use gst::DebugLevel as Gst;
        for (threshold, debug, level) in [
            (Gst::None, false, RDKafkaLogLevel::Error),
            (Gst::Error, false, RDKafkaLogLevel::Error),
            (Gst::Warning, false, RDKafkaLogLevel::Warning),
            (Gst::Info, false, RDKafkaLogLevel::Notice),
            (Gst::Debug, false, RDKafkaLogLevel::Info),
            (Gst::Log, false, RDKafkaLogLevel::Debug),
            (Gst::Error, true, RDKafkaLogLevel::Debug),
        ] {
            assert_eq!(
                librdkafka_log_level(threshold, debug) as i32,
                level as i32,
                "{threshold:?} {debug}"
            );
        }
    }

    #[test]
    fn booleans_are_read_as_librdkafka_reads_them() {
        let mut config = ClientConfig::new();
        for (value, read) in [
            ("true", Some(true)),
            ("True", Some(true)),
            ("t", Some(true)),
            ("1", Some(true)),
            ("FALSE", Some(false)),
            ("0", Some(false)),
            ("yes", None),
        ] {
            config.set("enable.idempotence", value);
            assert_eq!(bool_setting(&config, "enable.idempotence"), read, "{value}");
        }
        assert_eq!(bool_setting(&config, "enable.partition.eof"), None);
    }

    #[test]
    fn later_sources_override_earlier_ones() {
        gst::init().unwrap();
        let settings = ClientSettings {
            client_id: Some("cam".into()),
            config: Some(
                gst::Structure::builder("config")
                    .field("linger.ms", 7i32)
                    .field("client.id", "override")
                    .build(),
            ),
            ..Default::default()
        };
        let config = settings
            .client_config(&[("linger.ms", "1".into())])
            .unwrap();
        assert_eq!(config.get("linger.ms"), Some("7"));
        assert_eq!(config.get("client.id"), Some("override"));
        assert_eq!(
            config.get("bootstrap.servers"),
            Some(DEFAULT_BOOTSTRAP_SERVERS)
        );
    }
}

// SPDX-License-Identifier: MPL-2.0

//! `kafka://` URIs of `kafkasrc` and `kafkasink`:
//! `kafka://host:port[,host:port…]/topic?property=value&…`.
//!
//! The authority is the `bootstrap-servers` list, the path the topic, and
//! each query parameter one of the element's properties, set through its
//! own property machinery so that a name it does not have or a value its
//! property refuses is an error naming them. Reading the URI back gives
//! the properties that differ from a fresh element's, with secrets left out.

use gst::glib;
use gst::glib::translate::{ToGlibPtr, ToGlibPtrMut};
use gst::prelude::*;

use crate::kafka;

pub const SCHEME: &str = "kafka";

/// Kafka's own limit on topic names (`Topic.MAX_NAME_LENGTH`).
const MAX_TOPIC_LENGTH: usize = 249;

/// Properties that are not query parameters: the authority and the path
/// carry the first two, the others are no settings.
const NOT_IN_QUERY: [&str; 5] = ["bootstrap-servers", "topic", "uri", "name", "parent"];

/// A `kafka://` URI taken apart and percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaUri {
    /// Comma-separated `host:port` list, as the `bootstrap-servers`
    /// property takes it.
    pub bootstrap_servers: String,
    pub topic: String,
    /// Query parameters in the order written.
    pub params: Vec<(String, String)>,
}

/// Takes a `kafka://` URI apart; the error says what is wrong with it.
pub fn parse(uri: &str) -> Result<KafkaUri, String> {
    let rest = uri
        .split_once("://")
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(SCHEME))
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("not a {SCHEME}:// URI: {uri}"))?;
    if rest.contains('#') {
        return Err(format!("{SCHEME}:// URIs have no fragment (#): {uri}"));
    }
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = location
        .split_once('/')
        .ok_or_else(|| format!("no topic in {uri}: expected {SCHEME}://host:port/topic"))?;
    if authority.contains('@') {
        return Err(format!(
            "user names and passwords do not belong in a {SCHEME}:// URI (use config-file): {}",
            authority.rsplit('@').next().unwrap_or_default()
        ));
    }
    let mut brokers = Vec::new();
    for broker in authority.split(',') {
        let broker = decode(broker)?;
        check_broker(&broker)?;
        brokers.push(broker);
    }
    let topic = decode(path)?;
    check_topic(&topic)?;

    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("query parameter {pair:?} has no value (name=value)"))?;
        let (name, value) = (decode(name)?, decode(value)?);
        if params.iter().any(|(seen, _)| *seen == name) {
            return Err(format!("query parameter {name} is given twice"));
        }
        params.push((name, value));
    }
    Ok(KafkaUri {
        bootstrap_servers: brokers.join(","),
        topic,
        params,
    })
}

/// The URI of `bootstrap_servers`, `topic` and `params`, percent-encoded.
pub fn format(bootstrap_servers: &str, topic: &str, params: &[(String, String)]) -> String {
    let brokers: Vec<String> = bootstrap_servers
        .split(',')
        .map(str::trim)
        .filter(|broker| !broker.is_empty())
        .map(|broker| encode(broker, b":[]"))
        .collect();
    let mut uri = format!("{SCHEME}://{}/{}", brokers.join(","), encode(topic, b""));
    for (i, (name, value)) in params.iter().enumerate() {
        uri.push(if i == 0 { '?' } else { '&' });
        uri.push_str(&encode(name, b""));
        uri.push('=');
        uri.push_str(&encode(value, b"/:,"));
    }
    uri
}

fn check_broker(broker: &str) -> Result<(), String> {
    let port = broker
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty())
        .map(|(_, port)| port)
        .ok_or_else(|| format!("broker {broker:?} is not host:port"))?;
    match port.parse::<u16>() {
        Ok(port) if port > 0 => Ok(()),
        _ => Err(format!("broker {broker:?} has no valid port")),
    }
}

/// Kafka's rule for topic names, so that a bad one is named here rather
/// than by the broker at start.
fn check_topic(topic: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() {
        return Err(format!("no topic: expected {SCHEME}://host:port/topic"));
    }
    if topic == "." || topic == ".." || topic.len() > MAX_TOPIC_LENGTH || !topic.chars().all(legal)
    {
        return Err(format!(
            "{topic:?} is not a Kafka topic name (ASCII letters, digits, '.', '_' and '-', at most {MAX_TOPIC_LENGTH})"
        ));
    }
    Ok(())
}

fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {text:?}"))?;
            decoded.push(byte);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| format!("{text:?} does not decode to UTF-8 text"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters and
/// `keep`.
fn encode(text: &str, keep: &[u8]) -> String {
    let mut encoded = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || keep.contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn uri_error(message: String) -> glib::Error {
    glib::Error::new(gst::URIError::BadUri, &message)
}

/// The `uri` property's setter of both elements: applies `value` (unset:
/// nothing) with `defaults` as [`apply`] does. A property setter cannot
/// fail, so a bad URI is logged to `cat` and as a GLib warning.
pub fn set_property(
    element: &gst::Element,
    cat: gst::DebugCategory,
    value: &glib::Value,
    defaults: &[(&str, &str)],
) {
    let Some(text) = value
        .get::<Option<String>>()
        .expect("type checked upstream")
    else {
        return;
    };
    if let Err(err) = apply(element, &text, defaults) {
        gst::error!(cat, obj = element, "{err}");
        glib::g_warning!(cat.name(), "uri: {err}");
    }
}

/// Sets `element`'s properties from `uri`: bootstrap-servers, topic, each
/// query parameter, and `defaults` (URI defaults that differ from the
/// element's) unless the query names them. Nothing is set unless every
/// parameter is valid.
pub fn apply(
    element: &gst::Element,
    uri: &str,
    defaults: &[(&str, &str)],
) -> Result<(), glib::Error> {
    if element.current_state() > gst::State::Ready {
        return Err(glib::Error::new(
            gst::URIError::BadState,
            "the URI cannot change while the element is running",
        ));
    }
    let parsed = parse(uri).map_err(uri_error)?;
    let factory = element
        .factory()
        .map(|factory| factory.name().to_string())
        .unwrap_or_else(|| element.type_().name().to_string());
    let mut values = vec![
        (
            "bootstrap-servers".to_string(),
            parsed.bootstrap_servers.to_value(),
        ),
        ("topic".to_string(), parsed.topic.to_value()),
    ];
    for (name, text) in &parsed.params {
        if NOT_IN_QUERY.contains(&name.as_str()) {
            return Err(uri_error(format!(
                "{name} cannot be a query parameter of a {SCHEME}:// URI"
            )));
        }
        let value = value_from_str(element.upcast_ref(), &factory, name, text)?;
        values.push((name.clone(), value));
    }
    for (name, text) in defaults {
        if !parsed.params.iter().any(|(given, _)| given == name) {
            let value = value_from_str(element.upcast_ref(), &factory, name, text)?;
            values.push((name.to_string(), value));
        }
    }
    for (name, value) in &values {
        element.set_property_from_value(name, value);
    }
    Ok(())
}

/// The value `text` stands for as property `name` of `object`, checked the
/// way `g_object_set` would check it.
fn value_from_str(
    object: &glib::Object,
    factory: &str,
    name: &str,
    text: &str,
) -> Result<glib::Value, glib::Error> {
    let pspec = object
        .find_property(name)
        .ok_or_else(|| uri_error(format!("{factory} has no property {name}")))?;
    let flags = pspec.flags();
    if !flags.contains(glib::ParamFlags::WRITABLE)
        || flags.contains(glib::ParamFlags::CONSTRUCT_ONLY)
    {
        return Err(uri_error(format!(
            "property {name} of {factory} cannot be set"
        )));
    }
    let bad_value = || {
        uri_error(format!(
            "{text:?} is not a valid value of property {name} of {factory} ({})",
            pspec.value_type().name()
        ))
    };
    let mut value = if pspec.value_type() == glib::Type::STRING {
        // Taken as written: the deserializer would unquote and unescape.
        text.to_value()
    } else {
        glib::Value::deserialize_with_pspec(text, &pspec).map_err(|_| bad_value())?
    };
    // SAFETY: `value` holds the pspec's value type (checked above or made by
    // the deserializer for this pspec); validation only modifies our copy.
    let adjusted: bool = unsafe {
        glib::translate::from_glib(glib::gobject_ffi::g_param_value_validate(
            pspec.to_glib_none().0,
            value.to_glib_none_mut().0,
        ))
    };
    if adjusted {
        return Err(bad_value());
    }
    Ok(value)
}

/// The URI of `element`'s current settings: every query-able property that
/// differs from a fresh element's (with `defaults` applied). `config` keeps
/// only its fields that are no secrets. `None` while no topic is set.
pub fn current(element: &gst::Element, defaults: &[(&str, &str)]) -> Option<String> {
    let topic = element.property::<Option<String>>("topic")?;
    let bootstrap_servers = element.property::<Option<String>>("bootstrap-servers")?;
    let baseline = glib::Object::with_type(element.type_());
    for (name, text) in defaults {
        if let Some(pspec) = baseline.find_property(name)
            && let Ok(value) = glib::Value::deserialize_with_pspec(text, &pspec)
        {
            baseline.set_property_from_value(name, &value);
        }
    }
    let mut params = Vec::new();
    for pspec in element.list_properties() {
        let name = pspec.name();
        let flags = pspec.flags();
        if NOT_IN_QUERY.contains(&name)
            || !flags.contains(glib::ParamFlags::READWRITE)
            || flags.contains(glib::ParamFlags::CONSTRUCT_ONLY)
        {
            continue;
        }
        let Some(text) = shown(name, &element.property_value(name)) else {
            continue;
        };
        if shown(name, &baseline.property_value(name)).as_ref() != Some(&text) {
            params.push((name.to_string(), text));
        }
    }
    Some(format(&bootstrap_servers, &topic, &params))
}

/// A property value as a query parameter writes it; `None` for an unset
/// value. `config` loses its secret fields.
fn shown(name: &str, value: &glib::Value) -> Option<String> {
    if name == "config" {
        let mut config = value.get::<Option<gst::Structure>>().ok()??;
        let secrets: Vec<String> = config
            .fields()
            .filter(|key| kafka::is_secret_key(key))
            .map(|key| key.to_string())
            .collect();
        for key in secrets {
            config.remove_field(key.as_str());
        }
        return (config.n_fields() > 0).then(|| config.to_string());
    }
    if let Ok(text) = value.get::<Option<String>>() {
        return text;
    }
    if let Ok(caps) = value.get::<Option<gst::Caps>>() {
        return caps.map(|caps| caps.to_string());
    }
    if let Some((_, enum_value)) = glib::EnumValue::from_value(value) {
        return Some(enum_value.nick().to_string());
    }
    if let Ok(flag) = value.get::<bool>() {
        return Some(flag.to_string());
    }
    value.serialize().ok().map(|text| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn parses_brokers_topic_and_query() {
        let uri = parse(
            "kafka://10.0.0.1:9092,broker-2.example:9093/cam1?start-from=earliest&caps=image%2Fjpeg%2C%20width%3D(int)640",
        )
        .unwrap();
        assert_eq!(uri.bootstrap_servers, "10.0.0.1:9092,broker-2.example:9093");
        assert_eq!(uri.topic, "cam1");
        assert_eq!(
            uri.params,
            params(&[
                ("start-from", "earliest"),
                ("caps", "image/jpeg, width=(int)640")
            ])
        );
    }

    #[test]
    fn scheme_is_case_insensitive_and_ipv6_brokers_parse() {
        let uri = parse("KAFKA://[::1]:9092/t").unwrap();
        assert_eq!(uri.bootstrap_servers, "[::1]:9092");
        assert_eq!(uri.topic, "t");
        assert!(uri.params.is_empty());
    }

    #[test]
    fn percent_decodes_the_topic() {
        assert_eq!(
            parse("kafka://h:1/cam%2D1%2E%5Fx").unwrap().topic,
            "cam-1._x"
        );
    }

    #[test]
    fn plus_is_not_a_space() {
        let uri = parse("kafka://h:1/t?a=x+y").unwrap();
        assert_eq!(uri.params, params(&[("a", "x+y")]));
    }

    #[test]
    fn refuses_malformed_uris() {
        let cases = [
            ("http://h:1/t", "not a kafka:// URI"),
            ("kafka://h:1", "no topic"),
            ("kafka://h:1/", "no topic"),
            ("kafka://h/t", "is not host:port"),
            ("kafka://h:0/t", "no valid port"),
            ("kafka://h:x/t", "no valid port"),
            ("kafka://h:1,/t", "is not host:port"),
            ("kafka://:1/t", "is not host:port"),
            ("kafka://h:1/a/b", "not a Kafka topic name"),
            ("kafka://h:1/a%20b", "not a Kafka topic name"),
            ("kafka://h:1/..", "not a Kafka topic name"),
            ("kafka://h:1/t%4", "bad percent-encoding"),
            ("kafka://h:1/t%zz", "bad percent-encoding"),
            ("kafka://h:1/t?a=%FF", "UTF-8"),
            ("kafka://h:1/t?a", "has no value"),
            ("kafka://h:1/t?a=1&a=2", "given twice"),
            ("kafka://h:1/t#x", "no fragment"),
            ("kafka://user:pw@h:1/t", "do not belong"),
        ];
        for (uri, expected) in cases {
            let err = parse(uri).expect_err(uri);
            assert!(err.contains(expected), "{uri}: {err}");
        }
        let long = format!("kafka://h:1/{}", "t".repeat(MAX_TOPIC_LENGTH + 1));
        assert!(parse(&long).is_err());
        assert!(parse(&format!("kafka://h:1/{}", "t".repeat(MAX_TOPIC_LENGTH))).is_ok());
    }

    #[test]
    fn credentials_are_not_repeated_in_the_error() {
        let err = parse("kafka://user:hunter2@h:1/t").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn format_encodes_what_parse_decodes() {
        let values = params(&[
            ("caps", "video/x-h264, stream-format=(string)byte-stream"),
            ("key", "a&b=c d%e+f#g?"),
            ("config", "config, client.rack=\"r 1\""),
        ]);
        let uri = format(" h1:9092 , [::1]:9093", "cam.1", &values);
        assert_eq!(
            uri,
            "kafka://h1:9092,[::1]:9093/cam.1?caps=video/x-h264,%20stream-format%3D%28string%29byte-stream\
             &key=a%26b%3Dc%20d%25e%2Bf%23g%3F&config=config,%20client.rack%3D%22r%201%22"
        );
        let parsed = parse(&uri).unwrap();
        assert_eq!(parsed.bootstrap_servers, "h1:9092,[::1]:9093");
        assert_eq!(parsed.topic, "cam.1");
        assert_eq!(parsed.params, values);
    }

    fn fakesrc() -> gst::Element {
        gst::init().unwrap();
        gst::ElementFactory::make("fakesrc").build().unwrap()
    }

    #[test]
    fn values_are_checked_by_the_property() {
        let element = fakesrc();
        let object = element.upcast_ref::<glib::Object>();
        let value = value_from_str(object, "fakesrc", "num-buffers", "12").unwrap();
        assert_eq!(value.get::<i32>().unwrap(), 12);
        let value = value_from_str(object, "fakesrc", "sizetype", "fixed").unwrap();
        assert_eq!(shown("sizetype", &value).as_deref(), Some("fixed"));
        for (name, text, expected) in [
            ("no-such", "1", "fakesrc has no property no-such"),
            (
                "num-buffers",
                "many",
                "\"many\" is not a valid value of property num-buffers",
            ),
            (
                "num-buffers",
                "-2",
                "\"-2\" is not a valid value of property num-buffers",
            ),
            (
                "sizetype",
                "huge",
                "\"huge\" is not a valid value of property sizetype",
            ),
            (
                "sizetype",
                "99",
                "\"99\" is not a valid value of property sizetype",
            ),
        ] {
            let err = value_from_str(object, "fakesrc", name, text).unwrap_err();
            assert!(err.matches(gst::URIError::BadUri), "{err}");
            assert!(err.message().contains(expected), "{name}={text}: {err}");
        }
    }

    #[test]
    fn shown_drops_secret_config_fields() {
        gst::init().unwrap();
        let config: gst::Structure = "config, sasl.username=u, sasl.password=p, ssl.key.password=k"
            .parse()
            .unwrap();
        let text = shown("config", &config.to_value()).unwrap();
        assert_eq!(text, "config, sasl.username=(string)u;");
        let only_secrets: gst::Structure = "config, sasl.password=p".parse().unwrap();
        assert_eq!(shown("config", &only_secrets.to_value()), None);
    }
}

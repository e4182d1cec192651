// SPDX-License-Identifier: MPL-2.0

//! The scripts as a new user meets them. scripts/debian-packages.txt is the
//! one list of what a fresh machine must install: every GStreamer element
//! that scripts/, tests/ and examples/ put in a pipeline has to be on it,
//! with the Debian package that provides it, so that scripts/setup.sh
//! installs and checks it.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The elements of this plugin: built here, not installed.
const OWN_ELEMENTS: [&str; 3] = ["kafkasink", "kafkasrc", "mjpeghttpsink"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `element:NAME` entries of scripts/debian-packages.txt.
fn listed_elements() -> BTreeSet<String> {
    let list = std::fs::read_to_string(root().join("scripts/debian-packages.txt")).unwrap();
    list.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.split_whitespace().skip(1))
        .filter_map(|entry| entry.strip_prefix("element:"))
        .map(str::to_string)
        .collect()
}

/// Words after which a shell `!` negates a command.
const SHELL_WORDS: [&str; 9] = [
    "if", "elif", "while", "until", "then", "do", "&&", "||", "[",
];

fn is_element_name(word: &str) -> bool {
    !word.is_empty()
        && word.starts_with(|c: char| c.is_ascii_lowercase())
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A word of a description without its quoting: `"multifilesrc",` (a
/// Python argument list), `format!("appsrc` and `ingest="rtpjpegdepay`
/// (the element follows the last opening quote or parenthesis).
fn unquoted(word: &str) -> &str {
    let word = word.trim_end_matches(['"', '\'', ',', ')', ']', '\\', ';']);
    word.rfind(['"', '\'', '(', '[', '`'])
        .map_or(word, |i| &word[i + 1..])
}

/// The element a word after a link starts with: `"fakesink"]` yes,
/// `video/x-raw,…` (caps) and `$ingest` no.
fn leading_name(word: &str) -> Option<&str> {
    let word = word.trim_start_matches(['"', '\'', '(', '[']);
    // A Python f-string: `f"video/x-raw,…"` is caps, not an element `f`.
    let word = word
        .strip_prefix("f\"")
        .or_else(|| word.strip_prefix("f'"))
        .unwrap_or(word);
    let end = word
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(word.len());
    let (name, rest) = word.split_at(end);
    (is_element_name(name)
        && (rest.is_empty() || rest.starts_with(['"', '\'', ',', ')', ']', '\\', ';'])))
    .then_some(name)
}

/// Element names in the gst-launch descriptions of one line: the words
/// around each `!`. Before a link the element is the nearest word that is
/// not a property (`name=value`) or a substitution; after it, the first
/// word, unless that is caps or a substitution (`$ingest`, `{between}`).
fn linked_elements(line: &str, found: &mut BTreeSet<String>) {
    let raw: Vec<&str> = line.split_whitespace().collect();
    let words: Vec<&str> = raw.iter().map(|word| unquoted(word)).collect();
    let mut previous_link = 0;
    for (i, _) in words.iter().enumerate().filter(|(_, word)| **word == "!") {
        // `if ! command`, `[ ! -x … ] || ! cmp …`: shell negation, not a link.
        if i > 0 && SHELL_WORDS.contains(&raw[i - 1]) {
            previous_link = i + 1;
            continue;
        }
        // Words of a substitution (`{len(frames)`) are not elements.
        let before = raw[previous_link..i]
            .iter()
            .zip(&words[previous_link..i])
            .rev()
            .find(|(raw, word)| !raw.contains(['{', '}']) && is_element_name(word))
            .map(|(_, word)| *word);
        let after = raw.get(i + 1).and_then(|word| leading_name(word));
        found.extend(before.into_iter().chain(after).map(str::to_string));
        previous_link = i + 1;
    }
}

/// Element names given as string literals to `gst::ElementFactory::make`
/// (Rust) or `Gst.ElementFactory.make` (Python).
fn made_elements(text: &str, found: &mut BTreeSet<String>) {
    for marker in ["ElementFactory::make(\"", "ElementFactory.make(\""] {
        for (start, _) in text.match_indices(marker) {
            let rest = &text[start + marker.len()..];
            if let Some(end) = rest.find('"') {
                found.insert(rest[..end].to_string());
            }
        }
    }
}

fn sources(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, files);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "rs" || ext == "sh" || ext == "py")
        {
            files.push(path);
        }
    }
}

fn used_elements() -> BTreeSet<String> {
    let mut files = Vec::new();
    for dir in ["scripts", "tests", "examples"] {
        sources(&root().join(dir), &mut files);
    }
    let mut found = BTreeSet::new();
    // This file's own examples are not uses.
    files.retain(|file| !file.ends_with(file!()));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Shell and Rust continuation lines, and Python argument lists
        // spread over lines, belong to one description.
        let text = text.replace("\\\n", " ").replace(",\n", ", ");
        for line in text.lines() {
            linked_elements(line, &mut found);
        }
        made_elements(&text, &mut found);
    }
    for own in OWN_ELEMENTS {
        found.remove(own);
    }
    found
}

#[test]
fn every_element_used_is_on_the_setup_list() {
    let used = used_elements();
    let listed = listed_elements();
    // The scan itself must see the pipelines it is there for.
    for known in ["videotestsrc", "jpegenc", "rtspsrc", "clockoverlay"] {
        assert!(used.contains(known), "the scan missed {known}: {used:?}");
    }
    let missing: Vec<&String> = used.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "elements used in scripts/, tests/ or examples/ but not in scripts/debian-packages.txt \
         (add them with the Debian package that provides them): {missing:?}"
    );
}

#[test]
fn the_scan_finds_elements_in_each_kind_of_description() {
    let mut found = BTreeSet::new();
    linked_elements(
        r#"gst-launch-1.0 -e videotestsrc is-live=true ! video/x-raw,width=1 ! jpegenc ! kafkasink topic=a"#,
        &mut found,
    );
    linked_elements(r#"ingest="rtpjpegdepay ! jpegparse""#, &mut found);
    linked_elements(
        r#"    let p = launch(&format!("appsrc name=src ! {between} ! fakesink"));"#,
        &mut found,
    );
    linked_elements("if ! command -v kcat; then", &mut found);
    linked_elements(r#"[ ! -x "$venv/bin/python" ] || ! cmp -s a b"#, &mut found);
    linked_elements(
        r#"["multifilesrc", f"stop-index={len(frames) - 1}", "!", f"video/x-raw,width={w}", "!", "jpegenc"]"#,
        &mut found,
    );
    made_elements(r#"gst::ElementFactory::make("tee")"#, &mut found);
    let expected: BTreeSet<String> = [
        "videotestsrc",
        "jpegenc",
        "kafkasink",
        "rtpjpegdepay",
        "jpegparse",
        "appsrc",
        "fakesink",
        "multifilesrc",
        "tee",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(found, expected);
}

/// Runs a script of scripts/ with `env`, returning its exit success and
/// its standard error.
fn run_script(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = std::process::Command::new(root().join(args[0]))
        .args(&args[1..])
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn demo_names_a_camera_that_does_not_answer() {
    // A port nothing listens on: the camera check fails before the build.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("rtsp://127.0.0.1:{port}/stream");
    let (success, stderr) = run_script(
        &["scripts/demo.sh"],
        &[("RTSP_URL", &url), ("BROKERS", "127.0.0.1:1")],
    );
    assert!(!success, "demo.sh succeeded: {stderr}");
    assert!(
        stderr.contains("FAILED at the camera") && stderr.contains(&url),
        "{stderr}"
    );
}

#[test]
fn kafka_status_does_not_count_an_exited_broker() {
    let home = std::env::temp_dir().join(format!("gst-kafka-zombie-{}", std::process::id()));
    std::fs::create_dir_all(home.join("node1")).unwrap();
    std::fs::write(home.join("nodes"), "1\n").unwrap();
    // A child that exits and is not reaped stays a zombie: kill -0 still
    // finds it.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    let zombie = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !zombie() {
        assert!(std::time::Instant::now() < deadline, "no zombie");
        std::thread::yield_now();
    }
    std::fs::write(home.join("node1/broker.pid"), pid.to_string()).unwrap();
    let status = std::process::Command::new(root().join("scripts/kafka.sh"))
        .arg("status")
        .env("KAFKA_HOME", &home)
        .output()
        .unwrap();
    child.wait().unwrap();
    std::fs::remove_dir_all(&home).unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    // Exit status 3 is kafka.sh's "not running".
    assert_eq!(status.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("node 1: stopped"), "{stdout}");
}

#[test]
fn the_test_camera_names_a_missing_element_at_start() {
    // A machine without gstreamer1.0-x: every system plugin but pango's.
    let output = std::process::Command::new("pkg-config")
        .args(["--variable=pluginsdir", "gstreamer-1.0"])
        .output()
        .unwrap();
    let system = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    let plugins = std::env::temp_dir().join(format!("gst-kafka-no-pango-{}", std::process::id()));
    std::fs::create_dir_all(&plugins).unwrap();
    for entry in std::fs::read_dir(&system).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.extension().is_some_and(|e| e == "so") && name != "libgstpango.so" {
            std::os::unix::fs::symlink(&path, plugins.join(name)).unwrap();
        }
    }
    let mut camera = std::process::Command::new(common::test_camera_binary())
        .args(["--port", &common::free_port().to_string()])
        .env("GST_PLUGIN_SYSTEM_PATH", &plugins)
        .env("GST_PLUGIN_PATH", "")
        .env("GST_REGISTRY", plugins.join("registry.bin"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = camera.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = camera.kill();
            panic!("the camera kept running without clockoverlay");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut camera.stderr.take().unwrap(), &mut stderr).unwrap();
    std::fs::remove_dir_all(&plugins).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("clockoverlay"), "{stderr}");
}

// SPDX-License-Identifier: MPL-2.0

//! librdkafka's own log lines reach the `rdkafka` debug category at the
//! level it shows, also once the client is running.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;

use common::*;

#[test]
fn librdkafka_debug_lines_reach_the_rdkafka_category_after_the_client_starts() {
    init();
    gst::log::set_active(true);
    gst::log::remove_default_log_function();
    // The category is made when first used: set by name.
    gst::log::set_threshold_for_name("rdkafka", gst::DebugLevel::Log);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = lines.clone();
    let function = gst::log::add_log_function(
        move |category, _level, _file, _function, _line, _object, message| {
            if category.name() == "rdkafka"
                && let Some(text) = message.get()
            {
                seen.lock().unwrap().push(text.to_string());
            }
        },
    );
    let topic = unique_topic("logging");
    create_topic(&topic, 1, &[]);
    let pipeline = launch(&format!(
        "videotestsrc num-buffers=1 ! jpegenc ! kafkasink topic={topic} bootstrap-servers={} \
         config=\"config,debug=broker\"",
        bootstrap()
    ));
    pipeline.set_state(gst::State::Playing).unwrap();
    let end = wait_end(&pipeline.bus().unwrap(), Duration::from_secs(60));
    pipeline.set_state(gst::State::Null).unwrap();
    gst::log::remove_log_function(function);
    assert!(matches!(end, End::Eos), "{end:?}");
    // The connection to the broker the bootstrap metadata named comes up
    // after the client was created, when rust-rdkafka had set its log level.
    let lines = lines.lock().unwrap();
    assert!(
        lines
            .iter()
            .any(|line| line.contains("/1: Broker changed state") && line.ends_with("-> UP")),
        "{} rdkafka lines, none of broker 1 coming up: {:?}",
        lines.len(),
        lines.iter().rev().take(5).collect::<Vec<_>>()
    );
}

// SPDX-License-Identifier: MPL-2.0

//! Against a three-broker cluster (scripts/kafka.sh cluster) of this test
//! binary's own: a partition leader killed mid-stream.

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;

const TIMEOUT: Duration = Duration::from_secs(120);

fn cluster() -> &'static OwnBroker {
    static CLUSTER: std::sync::OnceLock<&'static OwnBroker> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| use_own_broker(OwnBroker::cluster()))
}

#[test]
fn leader_killed_mid_stream_loses_and_duplicates_nothing() {
    let cluster = cluster();
    let topic = unique_topic("leader");
    create_replicated_topic(&topic, 1, 3, &[("min.insync.replicas", "2")]);
    const FRAMES: u64 = 450;
    let camera = launch(&format!(
        "videotestsrc is-live=true num-buffers={FRAMES} ! video/x-raw,width=160,height=120,framerate=30/1 ! jpegenc \
         ! kafkasink name=sink topic={topic} bootstrap-servers={} message-timeout-ms=120000",
        bootstrap()
    ));
    let viewer = launch(&format!(
        "kafkasrc name=src topic={topic} bootstrap-servers={} start-from=earliest ! fakesink",
        bootstrap()
    ));
    let camera_bus = camera.bus().unwrap();
    camera.set_state(gst::State::Playing).unwrap();
    viewer.set_state(gst::State::Playing).unwrap();
    assert!(wait_until(TIMEOUT, || stats(&camera, "sink")
        .get::<u64>("records-acked")
        .unwrap()
        > 90));

    let leader = leader(&topic, 0);
    eprintln!("killing broker {leader}, the leader of {topic}/0");
    cluster.node_n("kill-node", leader);

    let end = wait_end(&camera_bus, TIMEOUT);
    assert!(matches!(end, End::Eos), "{end:?}");
    assert!(
        wait_until(TIMEOUT, || stats(&viewer, "src")
            .get::<u64>("buffers-pushed")
            .unwrap()
            == FRAMES),
        "the consumer got {} of {FRAMES}",
        stats(&viewer, "src").get::<u64>("buffers-pushed").unwrap()
    );
    let src = stats(&viewer, "src");
    let sink = stats(&camera, "sink");
    camera.set_state(gst::State::Null).unwrap();
    viewer.set_state(gst::State::Null).unwrap();
    cluster.node_n("start-node", leader);
    eprintln!("new leader: {}", common::leader(&topic, 0));

    assert_eq!(sink.get::<u64>("records-acked").unwrap(), FRAMES);
    assert_eq!(sink.get::<u64>("delivery-errors").unwrap(), 0);
    assert_eq!(src.get::<u64>("duplicates").unwrap(), 0);
    assert_eq!(src.get::<u64>("sequence-gaps").unwrap(), 0);
    let seqs: Vec<u64> = read_topic(&topic)
        .iter()
        .map(|r| r.header("gst-seq").unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs, (0..FRAMES).collect::<Vec<_>>());
}

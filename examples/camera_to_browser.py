#!/usr/bin/python3
# SPDX-License-Identifier: MPL-2.0
"""Camera to browser through Kafka with PyGObject, for users coming from the
OpenCV + kafka-python + Flask tutorial: the same two halves (publish the
camera's JPEG frames to a topic; serve the topic at /video_feed), as two
GStreamer pipelines, with each element's statistics printed every 5 s.

Needs Debian's python3-gi and gir1.2-gstreamer-1.0 (scripts/setup.sh
installs them) and the plugin on GST_PLUGIN_PATH:

    GST_PLUGIN_PATH=target/release /usr/bin/python3 examples/camera_to_browser.py \
        rtsp://127.0.0.1:8554/test 127.0.0.1:9092 [topic] [http-port] [seconds]
"""

import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def main():
    Gst.init(None)
    camera = sys.argv[1] if len(sys.argv) > 1 else "rtsp://127.0.0.1:8554/test"
    brokers = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:9092"
    topic = sys.argv[3] if len(sys.argv) > 3 else "rtsp-stream"
    port = sys.argv[4] if len(sys.argv) > 4 else "8080"
    seconds = int(sys.argv[5]) if len(sys.argv) > 5 else 0

    # The tutorial's producer: cv2.VideoCapture + imencode + KafkaProducer.send.
    producer = Gst.parse_launch(
        f"rtspsrc location={camera} latency=0 ! rtpjpegdepay ! jpegparse "
        f"! kafkasink name=sink topic={topic} bootstrap-servers={brokers} create-topic=true"
    )
    # The tutorial's Flask consumer serving /video_feed.
    viewer = Gst.parse_launch(
        f"kafkasrc name=src topic={topic} bootstrap-servers={brokers} max-lag-ms=1000 "
        f"! mjpeghttpsink name=http port={port}"
    )

    loop = GLib.MainLoop()
    status = {"code": 0}

    def on_message(_bus, message, name):
        if message.type == Gst.MessageType.ERROR:
            error, debug = message.parse_error()
            print(f"{name}: error: {error.message} ({debug})", file=sys.stderr)
            status["code"] = 1
            loop.quit()
        elif message.type == Gst.MessageType.WARNING:
            warning, _ = message.parse_warning()
            print(f"{name}: warning: {warning.message}", file=sys.stderr)
        elif message.type == Gst.MessageType.EOS:
            loop.quit()

    for pipeline, name in ((producer, "producer"), (viewer, "viewer")):
        bus = pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", on_message, name)

    producer.set_state(Gst.State.PLAYING)
    # The viewer needs the topic the producer creates at start.
    producer.get_state(30 * Gst.SECOND)
    viewer.set_state(Gst.State.PLAYING)
    print(f"open http://127.0.0.1:{port}/", flush=True)

    def print_stats():
        for element in (producer.get_by_name("sink"), viewer.get_by_name("src"), viewer.get_by_name("http")):
            print(element.get_property("stats").to_string(), flush=True)
        return True

    GLib.timeout_add_seconds(5, print_stats)
    if seconds:
        GLib.timeout_add_seconds(seconds, loop.quit)
    try:
        loop.run()
    except KeyboardInterrupt:
        pass

    # EOS first, so that every frame accepted is acknowledged before stopping.
    producer.send_event(Gst.Event.new_eos())
    producer.get_bus().timed_pop_filtered(30 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    producer.set_state(Gst.State.NULL)
    viewer.set_state(Gst.State.NULL)
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())

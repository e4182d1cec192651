# SPDX-License-Identifier: MPL-2.0
"""Seek latency of mjpeghttpsink's replay: the time from a request of
`/video_feed?at=T` (T random within the topic) to the first whole frame,
and of `/snapshot.jpg?at=T`, over a topic of MINUTES of FPS frames.

With --concurrent SECONDS it then runs, for that long, REPLAYS replay
clients at different times beside LIVE live clients of a live camera
publishing at FPS (scripts/bench/producers.py live), read by
examples/mjpeg-clients, and reports their frame rates and the viewer's CPU
and peak RSS.

With --h264-seconds SECONDS it also measures seeks (--h264-seeks of them)
in an H.264 topic of that many seconds of 1280x720 at 30 fps with a
keyframe every 2 s, written by kafkasink and viewed through `h264parse !
openh264dec ! videoconvert ! jpegenc`: each seek decodes from the keyframe
at or before T.

python replay.py BOOTSTRAP PLUGIN_DIR [--minutes 10] [--fps 30] [--seeks 100]
    [--concurrent 20 --replays 20 --live 100] [--h264-seconds 60 --h264-seeks 20]

Needs confluent_kafka (the project venv) and gst-launch-1.0; makes its own
640x360 JPEG frames, topic (deleted at the end) and viewer. PLUGIN_DIR is a
target profile directory (target/release), whose examples/mjpeg-clients is
used.
"""

import argparse
import glob
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def sample(pid):
    """CPU seconds used so far and resident memory (kB) of process `pid`."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return ticks / os.sysconf("SC_CLK_TCK"), rss


def concurrent(args, port, topic, start, end, directory, viewer):
    """Replay clients at random times beside live clients of a live camera."""
    seconds = args.concurrent
    here = os.path.dirname(os.path.abspath(__file__))
    paths = sorted(glob.glob(f"{directory}/f-*.jpg"))
    camera = subprocess.Popen(
        [sys.executable, os.path.join(here, "producers.py"), "live", args.bootstrap, topic,
         str(args.fps), str(seconds + 10)] + paths
    )
    clients_bin = os.path.join(args.plugin_dir, "examples", "mjpeg-clients")
    latest = end - (seconds + 5) * 1000
    replay_urls = [f"http://127.0.0.1:{port}/video_feed?at={random.randint(start, latest)}"
                   for _ in range(args.replays)]
    time.sleep(2)
    cpu_before, _ = sample(viewer.pid)
    began = time.monotonic()
    runs = [
        subprocess.Popen([clients_bin, f"http://127.0.0.1:{port}/video_feed", "--clients",
                          str(args.live), "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True),
        subprocess.Popen([clients_bin, *replay_urls, "--clients", str(args.replays), "--seconds",
                          str(seconds)], stdout=subprocess.PIPE, text=True),
    ]
    peak_rss = 0
    while any(run.poll() is None for run in runs):
        peak_rss = max(peak_rss, sample(viewer.pid)[1])
        time.sleep(0.5)
    cpu_after, _ = sample(viewer.pid)
    elapsed = time.monotonic() - began
    camera.wait()
    for name, run in zip(["live", "replay"], runs):
        result = json.loads(run.stdout.read().strip().splitlines()[-1])
        print(f"{name}: {result['clients']} clients, fps min {result['fps_min']} median "
              f"{result['fps_median']} max {result['fps_max']}, errors {result['errors']}", flush=True)
    print(f"viewer: {100 * (cpu_after - cpu_before) / elapsed:.0f} % of one core, "
          f"peak RSS {peak_rss // 1024} MB", flush=True)


def frames(directory):
    subprocess.run(
        ["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=30", "pattern=ball",
         "!", "video/x-raw,width=640,height=360,framerate=30/1", "!", "timeoverlay",
         "!", "jpegenc", "!", "multifilesink", f"location={directory}/f-%03d.jpg"],
        check=True,
    )
    return [open(path, "rb").read() for path in sorted(glob.glob(f"{directory}/f-*.jpg"))]


def produce(bootstrap, topic, jpegs, count, fps):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "message.max.bytes": 16777216})
    start = int(time.time() * 1000) - int(count * 1000 / fps) - 1000
    for i in range(count):
        while True:
            try:
                producer.produce(topic, jpegs[i % len(jpegs)], timestamp=start + int(i * 1000 / fps))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)
    return start, start + int((count - 1) * 1000 / fps)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_frame(port, path):
    """Seconds from the request to the end of the first part's JPEG."""
    began = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status} {response.read()!r}")
    if response.getheader("Content-Type", "").startswith("image/"):
        response.read()
    else:
        length = None
        while True:
            line = response.fp.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            if line == b"\r\n" and length is not None:
                break
        response.fp.read(length)
    elapsed = time.perf_counter() - began
    connection.sock.close()
    return elapsed


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def start_viewer(plugin_dir, bootstrap, topic, between, port):
    # kafkasrc, the elements between (linked), mjpeghttpsink
    command = ["gst-launch-1.0", "-q", "kafkasrc", f"topic={topic}", f"bootstrap-servers={bootstrap}", "!"]
    if between:
        command.extend(between)
        command.append("!")
    command += ["mjpeghttpsink", f"port={port}", "max-replay-clients=100"]
    viewer = subprocess.Popen(
        command, env=dict(os.environ, GST_PLUGIN_PATH=plugin_dir), stdout=subprocess.DEVNULL,
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return viewer


def seeks(port, start, end, count, what):
    random.seed(13)
    for name, template in [("stream", "/video_feed?at={}"), ("snapshot", "/snapshot.jpg?at={}")]:
        first_frame(port, template.format(start))  # a warm-up connection
        times = [first_frame(port, template.format(random.randint(start, end)))
                 for _ in range(count)]
        print(f"{name}: {count} seeks over {what}: "
              f"p50 {percentile(times, 50) * 1000:.1f} ms, p99 {percentile(times, 99) * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms", flush=True)


def h264(args):
    """Seeks in an H.264 topic written by kafkasink."""
    topic = f"bench-replay-h264-{os.getpid()}"
    frames_count = args.h264_seconds * 30
    env = dict(os.environ, GST_PLUGIN_PATH=args.plugin_dir)
    began = time.perf_counter()
    viewer = None
    try:
        subprocess.run(
            ["gst-launch-1.0", "-q", "videotestsrc", f"num-buffers={frames_count}", "pattern=ball",
             "!", "video/x-raw,width=1280,height=720,framerate=30/1", "!", "timeoverlay",
             "!", "openh264enc", "gop-size=60", "!", "h264parse",
             "!", "video/x-h264,stream-format=byte-stream,alignment=au",
             "!", "kafkasink", f"topic={topic}", f"bootstrap-servers={args.bootstrap}", "create-topic=true"],
            env=env, check=True,
        )
        print(f"h264: produced {frames_count} frames of 1280x720, a keyframe every 60, "
              f"in {time.perf_counter() - began:.1f} s", flush=True)
        port = free_port()
        viewer = start_viewer(args.plugin_dir, args.bootstrap, topic,
                              ["h264parse", "!", "openh264dec", "!", "videoconvert", "!", "jpegenc"], port)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/timeline")
        stream = json.loads(connection.getresponse().read())["streams"][0]
        connection.close()
        seeks(port, stream["start"], stream["end"], args.h264_seeks,
              f"{args.h264_seconds} s of 30 fps 1280x720 H.264, 2 s GOP")
    finally:
        if viewer:
            viewer.terminate()
            viewer.wait()
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": args.bootstrap})
        admin.delete_topics([topic])[topic].result(30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("plugin_dir")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--seeks", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=0, metavar="SECONDS")
    parser.add_argument("--replays", type=int, default=20)
    parser.add_argument("--live", type=int, default=100)
    parser.add_argument("--h264-seconds", type=int, default=0)
    parser.add_argument("--h264-seeks", type=int, default=20)
    args = parser.parse_args()

    topic = f"bench-replay-{os.getpid()}"
    count = int(args.minutes * 60 * args.fps)
    directory = tempfile.mkdtemp()
    jpegs = frames(directory)
    began = time.perf_counter()
    start, end = produce(args.bootstrap, topic, jpegs, count, args.fps)
    print(f"produced {count} frames ({sum(map(len, jpegs)) // len(jpegs)} bytes each on average) "
          f"in {time.perf_counter() - began:.1f} s", flush=True)
    port = free_port()
    viewer = start_viewer(args.plugin_dir, args.bootstrap, topic, [], port)
    try:
        seeks(port, start, end, args.seeks, f"{args.minutes:g} min of {args.fps} fps 640x360")
        if args.concurrent:
            concurrent(args, port, topic, start, end, directory, viewer)
    finally:
        viewer.terminate()
        viewer.wait()
        shutil.rmtree(directory, ignore_errors=True)
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": args.bootstrap})
        admin.delete_topics([topic])[topic].result(30)
    if args.h264_seconds:
        h264(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: MPL-2.0
"""Benchmarks of the camera wall, in one run on one broker: the wall page in
headless Chromium over HTTP/1.1 against HTTPS with HTTP/2, a hundred
cameras behind one consumer, and what TLS costs the viewer. Run through
scripts/bench.sh; writes docs/benchmarks-wall.md.
"""

import argparse
import json
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

from bench import EXAMPLES, HERE, PY, RELEASE, ROOT, free_port, log, machine, proc_cpu_seconds, proc_rss_mb, stop, \
    wait_port


class Wall:
    def __init__(self, args):
        self.args = args
        self.bootstrap = args.bootstrap
        self.work = Path(args.work_dir)
        self.env = dict(__import__("os").environ, GST_PLUGIN_PATH=str(RELEASE))
        self.results = {}
        self.tls = self.certificate()
        self.small = self.frames("wall-360p", 640, 360)
        self.full_hd = sorted(str(p) for p in Path(args.frames_dir).glob("f-*.jpg"))[:30]

    def certificate(self):
        cert, key = self.work / "cert.pem", self.work / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-addext", "basicConstraints=critical,CA:FALSE", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        return cert, key

    def frames(self, name, width, height):
        """30 moving JPEG frames (ball, quality 85)."""
        out = self.work / name
        out.mkdir()
        subprocess.run(["gst-launch-1.0", "-q", "videotestsrc", "num-buffers=30", "pattern=ball", "!",
                        f"video/x-raw,width={width},height={height}", "!", "jpegenc", "quality=85", "!",
                        "multifilesink", f"location={out}/f-%03d.jpg"], check=True, env=self.env)
        return sorted(str(p) for p in out.glob("f-*.jpg"))

    def topic(self, name):
        topic = f"bench-{name}-{int(time.time() * 1000)}"
        subprocess.run([str(EXAMPLES / "kafka-topics"), "--bootstrap-server", self.bootstrap, "create", topic,
                        "--partitions", "1", "--replication-factor", "1"], check=True, stdout=subprocess.DEVNULL)
        return topic

    def cameras(self, topic, cameras, fps, seconds, frames):
        return subprocess.Popen([PY, str(HERE / "producers.py"), "wall", self.bootstrap, topic, str(fps),
                                 str(seconds), str(cameras)] + frames, env=self.env, stderr=subprocess.DEVNULL)

    def viewer(self, topic, port, tls, log=None):
        """The viewer; with `log`, its connection events (mjpeghttpsink's
        debug lines: stalled clients dropped, connections refused) go there."""
        cmd = ["gst-launch-1.0", "-q", "kafkasrc", f"topic={topic}", f"bootstrap-servers={self.bootstrap}",
               "max-lag-ms=1000", "!", "mjpeghttpsink", f"port={port}"]
        if tls:
            cmd += [f"tls-certificate={self.tls[0]}", f"tls-key={self.tls[1]}"]
        env = dict(self.env, GST_DEBUG="mjpeghttpsink:5") if log else self.env
        stderr = open(log, "w") if log else subprocess.DEVNULL
        server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        wait_port(port, server)
        return server

    def stats(self, port, tls):
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/stats"
        context = None
        if tls:
            import ssl
            context = ssl.create_default_context(cafile=str(self.tls[0]))
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return json.load(response)

    def await_cameras(self, port, tls, count):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cameras = [s for s in self.stats(port, tls)["streams"] if s.get("camera")]
            if len(cameras) >= count:
                return
            time.sleep(0.5)
        raise RuntimeError(f"fewer than {count} cameras on the wall after 60 s")

    # 1. The wall in Chromium: HTTP/1.1 against HTTPS with HTTP/2

    def wall_in_browser(self):
        from playwright.sync_api import sync_playwright

        cameras, seconds = self.args.wall_cameras, self.args.seconds
        topic = self.topic("wall")
        producer = self.cameras(topic, cameras, 30, 2 * (seconds + 30), self.small)
        self.results["browser"] = {}
        try:
            for label, tls in [("HTTP/1.1", False), ("HTTPS, HTTP/2", True)]:
                port = free_port()
                server = self.viewer(topic, port, tls)
                try:
                    self.await_cameras(port, tls, cameras)
                    with sync_playwright() as playwright:
                        browser = playwright.chromium.launch(
                            executable_path="/usr/bin/chromium",
                            args=["--no-sandbox", "--ignore-certificate-errors"])
                        page = browser.new_page(viewport={"width": 1600, "height": 1000})
                        page.goto(f"{'https' if tls else 'http'}://127.0.0.1:{port}/", wait_until="domcontentloaded")
                        time.sleep(3)
                        before = self.stats(port, tls)
                        cpu_before, started = proc_cpu_seconds(server.pid), time.monotonic()
                        time.sleep(seconds)
                        after = self.stats(port, tls)
                        elapsed = time.monotonic() - started
                        cpu = (proc_cpu_seconds(server.pid) - cpu_before) / elapsed
                        if tls:
                            page.screenshot(path=str(ROOT / "docs" / "wall.png"))
                        browser.close()
                finally:
                    stop(server)
                first = {s["path"]: s for s in before["streams"] if s.get("camera")}
                last = [s for s in after["streams"] if s.get("camera")]
                fps = sorted((s["frames_sent_total"] - first[s["path"]]["frames_sent_total"]) / elapsed
                             for s in last)
                input_fps = statistics.median((s["frames_in"] - first[s["path"]]["frames_in"]) / elapsed
                                              for s in last)
                self.results["browser"][label] = {
                    "tiles": len(fps), "fps": fps, "input_fps": input_fps, "viewer_cores": cpu,
                    "full_rate": sum(f >= 0.9 * input_fps for f in fps), "starved": sum(f < 1 for f in fps)}
                log(f"wall {label}: tiles at full rate {self.results['browser'][label]['full_rate']}/{len(fps)}, "
                    f"starved {self.results['browser'][label]['starved']}, fps {[round(f, 1) for f in fps]}")
        finally:
            stop(producer)

    # 2. A hundred cameras, ten clients each, one process and one consumer

    def many_cameras(self):
        cameras, per_camera, fps = self.args.many_cameras, self.args.clients_per_camera, self.args.many_fps
        seconds = self.args.seconds
        topic = self.topic("many")
        producer = self.cameras(topic, cameras, fps, seconds + 90, self.small)
        port = free_port()
        events_log = self.work / "many-viewer.log"
        server = self.viewer(topic, port, False, events_log)
        try:
            self.await_cameras(port, False, cameras)
            urls = [f"http://127.0.0.1:{port}/video_feed/cam{i:03d}" for i in range(cameras)]
            cpu_before, started = proc_cpu_seconds(server.pid), time.monotonic()
            out = subprocess.run([str(EXAMPLES / "mjpeg-clients"), *urls, "--clients", str(cameras * per_camera),
                                  "--seconds", str(seconds), "--warmup-ms", "2000"],
                                 capture_output=True, text=True, timeout=seconds + 120).stdout
            elapsed = time.monotonic() - started
            clients = json.loads(out.strip().splitlines()[-1])
            consumers = subprocess.run(["ss", "-tnp"], capture_output=True, text=True).stdout
            kafka_port = self.bootstrap.rsplit(":", 1)[1]
            connections = sum(f":{kafka_port} " in line and f"pid={server.pid}," in line
                              for line in consumers.splitlines())
            self.results["many"] = {
                "cameras": cameras, "clients": cameras * per_camera, "fps": fps, "result": clients,
                "viewer_cores": (proc_cpu_seconds(server.pid) - cpu_before) / elapsed,
                "viewer_rss_mb": proc_rss_mb(server.pid), "kafka_connections": connections}
            events = events_log.read_text(errors="replace")
            self.results["many"]["stalled"] = events.count("accepted nothing for")
            self.results["many"]["refused"] = events.count("connections open")
            log(f"many cameras: {clients['fps_median']:.1f} fps median, {clients['errors']} errors, "
                f"{self.results['many']['viewer_cores']:.2f} cores, {self.results['many']['viewer_rss_mb']:.0f} MB")
        finally:
            stop(server)
            stop(producer)

    # 3. The price of TLS: 100 clients of a 30 fps 1080p stream

    def tls_price(self):
        seconds, clients = self.args.seconds, self.args.tls_clients
        topic = self.topic("tls")
        producer = self.cameras(topic, 1, 30, 2 * (seconds + 40), self.full_hd)
        self.results["tls"] = {}
        try:
            for label, tls in [("HTTP", False), ("HTTPS", True)]:
                port = free_port()
                server = self.viewer(topic, port, tls)
                try:
                    self.await_cameras(port, tls, 1)
                    scheme = "https" if tls else "http"
                    cmd = [str(EXAMPLES / "mjpeg-clients"), f"{scheme}://127.0.0.1:{port}/video_feed/cam000",
                           "--clients", str(clients), "--seconds", str(seconds), "--warmup-ms", "2000"]
                    if tls:
                        cmd += ["--cacert", str(self.tls[0])]
                    cpu_before, started = proc_cpu_seconds(server.pid), time.monotonic()
                    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120).stdout
                    elapsed = time.monotonic() - started
                    result = json.loads(out.strip().splitlines()[-1])
                    result["viewer_cores"] = (proc_cpu_seconds(server.pid) - cpu_before) / elapsed
                    result["viewer_rss_mb"] = proc_rss_mb(server.pid)
                finally:
                    stop(server)
                self.results["tls"][label] = result
                log(f"tls {label}: {result['fps_median']:.1f} fps median, {result['viewer_cores']:.2f} cores")
        finally:
            stop(producer)


def chromium_version():
    out = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout
    return out.strip() or "Chromium"


def report(wall, commit, command, elapsed):
    r = wall.results
    lines = [
        "# Benchmarks: the camera wall, HTTPS and HTTP/2",
        "",
        f"Measured by `{command}` at commit `{commit}` in {elapsed / 60:.1f} minutes, against one local "
        "Apache Kafka broker (scripts/kafka.sh), every case with its comparison in the same run. Cameras "
        "are a confluent-kafka producer publishing 30 pre-encoded moving JPEG frames in a loop, one key per "
        "camera (`cam000`, …), into one topic; the viewer is "
        "`gst-launch-1.0 kafkasrc topic=… max-lag-ms=1000 ! mjpeghttpsink`, one process with one kafkasrc.",
        "",
        "Machine: " + "; ".join(machine()),
        "",
    ]
    if "browser" in r:
        lines += [f"## 1. The wall in headless Chromium: {wall.args.wall_cameras} cameras × 30 fps 640×360",
                  "",
                  f"The `/` page open for {wall.args.seconds} s in headless {chromium_version()} (Playwright); "
                  "frames per tile counted by the viewer (`frames_sent_total` of each camera's stream, from "
                  "`/stats`); the input rate is each camera's `frames_in` over the same time.",
                  "",
                  "| served over | tiles | tiles at ≥ 90 % of the input rate | tiles with < 1 fps | frames/s per tile (min / median / max) | input fps per camera | viewer CPU (cores) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for label, b in r["browser"].items():
            fps = b["fps"]
            lines.append(f"| {label} | {b['tiles']} | {b['full_rate']} | {b['starved']} | "
                         f"{min(fps):.1f} / {statistics.median(fps):.1f} / {max(fps):.1f} | "
                         f"{b['input_fps']:.1f} | {b['viewer_cores']:.2f} |")
        lines.append("")
    if "many" in r:
        m = r["many"]
        c = m["result"]
        lines += [f"## 2. {m['cameras']} cameras on one topic, {m['clients'] // m['cameras']} clients each",
                  "",
                  f"{m['cameras']} cameras × {m['fps']} fps 640×360 (a low rate, so that the broker, the Python "
                  f"producer and {m['clients']} client threads fit beside the viewer on two cores), each client "
                  f"reading one camera's `/video_feed/camNNN` for {wall.args.seconds} s (mjpeg-clients). The "
                  "viewer's connections to Kafka are those of its one consumer: librdkafka's bootstrap "
                  "connection and the one to the partition leader (the same broker here).",
                  "",
                  "| clients | frames/s per client (min / median / max) | client errors | viewer CPU (cores) | viewer RSS (MB) | viewer's TCP connections to Kafka |",
                  "| --- | --- | --- | --- | --- | --- |",
                  f"| {m['clients']} | {c['fps_min']:.1f} / {c['fps_median']:.1f} / {c['fps_max']:.1f} | {c['errors']} | "
                  f"{m['viewer_cores']:.2f} | {m['viewer_rss_mb']:.0f} | {m['kafka_connections']} |",
                  ""]
        if c["errors"]:
            lines += [f"The first client error: `{c['first_error']}`. The viewer dropped {m['stalled']} client(s) "
                      f"whose socket accepted nothing for `send-timeout-ms` (5 s; the clients are threads on the "
                      f"same two cores) and refused {m['refused']} connection(s) over `max-connections`.", ""]
    if "tls" in r:
        lines += [f"## 3. The price of TLS: {wall.args.tls_clients} clients of one 30 fps 1080p camera",
                  "",
                  "The same stream served over plain HTTP, then over HTTPS (rustls, TLS 1.3, clients are "
                  "mjpeg-clients over HTTP/1.0), one after the other.",
                  "",
                  "| served over | frames/s per client (min / median) | MB/s to clients | viewer CPU (cores) | viewer RSS (MB) |",
                  "| --- | --- | --- | --- | --- |"]
        for label, t in r["tls"].items():
            lines.append(f"| {label} | {t['fps_min']:.1f} / {t['fps_median']:.1f} | {t['mbytes_per_s']:.0f} | "
                         f"{t['viewer_cores']:.2f} | {t['viewer_rss_mb']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--frames-dir", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--wall-cameras", type=int, default=16)
    parser.add_argument("--many-cameras", type=int, default=100)
    parser.add_argument("--many-fps", type=int, default=5)
    parser.add_argument("--clients-per-camera", type=int, default=10)
    parser.add_argument("--tls-clients", type=int, default=100)
    parser.add_argument("--cases", default="browser,many,tls")
    args = parser.parse_args()
    started = time.monotonic()
    wall = Wall(args)
    cases = args.cases.split(",")
    if "browser" in cases:
        wall.wall_in_browser()
    if "many" in cases:
        wall.many_cameras()
    if "tls" in cases:
        wall.tls_price()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip()
    command = "scripts/bench/wall.py (run by scripts/bench.sh)"
    text = report(wall, commit, command, time.monotonic() - started)
    if "browser" in cases:
        text += "\n![the wall of the HTTP/2 run in Chromium](wall.png)\n"
    (ROOT / "docs" / "benchmarks-wall.md").write_text(text + "\n")
    log("wrote docs/benchmarks-wall.md")


if __name__ == "__main__":
    main()

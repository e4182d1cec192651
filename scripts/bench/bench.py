# SPDX-License-Identifier: MPL-2.0
"""Benchmarks of gst-kafka side by side with kcat, kafka-python,
confluent-kafka and the tutorial's Flask app, in one run on one broker.
Run through scripts/bench.sh, which prepares the environment; writes
docs/benchmarks.md and its plots.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELEASE = ROOT / "target" / "release"
EXAMPLES = RELEASE / "examples"
HERE = Path(__file__).resolve().parent
PY = sys.executable
CLIENT_COUNTS = [1, 10, 100, 500]
# Kafka's default record limits (broker message.max.bytes, and so a new
# topic's max.message.bytes) and the raised ones scripts/kafka.sh sets.
STOCK_LIMIT = 1048588
RAISED_LIMIT = 16777216
FANOUT_SECONDS = 10


def log(*parts):
    print("bench:", *parts, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def timed(cmd, env, output=None, cwd=None):
    """Runs cmd to completion (in cwd): wall seconds and CPU seconds
    (user+system). With output, a list, its standard output is appended to
    it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    stdout = subprocess.DEVNULL if output is None else subprocess.PIPE
    result = subprocess.run(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {result.stderr.decode(errors='replace')[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if output is not None:
        output.append(result.stdout.decode(errors="replace"))
    return wall, cpu


POLL_EVENTS = ["syscalls:sys_enter_poll", "syscalls:sys_enter_ppoll"]


def polls(cmd, env, work_dir, cwd=None):
    """Runs cmd once under `perf stat`: the poll(2) and ppoll(2) calls of
    all its threads (a thread that busy-waits makes millions), or None when
    perf is missing or may not count them, so that the timed results are
    kept. Not timed: the tracepoints slow the calls they count."""
    if shutil.which("perf") is not None:
        out = Path(work_dir).resolve() / "perf-stat.csv"
        result = subprocess.run(["perf", "stat", "-x", ",", "-e", ",".join(POLL_EVENTS), "-o", str(out), "--"]
                                + cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
        if result.returncode == 0:
            counts = [int(fields[0]) for fields in (line.split(",") for line in out.read_text().splitlines())
                      if len(fields) > 2 and fields[2] in POLL_EVENTS and fields[0].isdigit()]
            if counts:
                return sum(counts)
        log(f"poll calls not counted: perf stat failed: {result.stderr.decode(errors='replace')[-300:]}")
    return None


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class FrameSet:
    """Pre-made JPEG files of one frame size, and how many records a run
    publishes from them (going round the files)."""

    def __init__(self, spec):
        # label=directory:records
        label, rest = spec.split("=", 1)
        directory, records = rest.rsplit(":", 1)
        self.label = label
        # Resolved: commands run in it name its files alone.
        self.dir = Path(directory).resolve()
        self.frames = sorted(str(p) for p in self.dir.glob("f-*.jpg"))
        if not self.frames:
            raise RuntimeError(f"no f-*.jpg frames in {directory}")
        self.sizes = {p: os.path.getsize(p) for p in self.frames}
        self.records = int(records)
        self.mean_kb = sum(self.sizes.values()) / len(self.frames) / 1000

    def cycle(self, n):
        """n frame paths, going round the prepared frames."""
        return [self.frames[i % len(self.frames)] for i in range(n)]

    def names(self, n):
        """The files of cycle(n) by name, for a command run in self.dir:
        tens of thousands of whole paths can pass the kernel's 2 MB limit on
        a command line."""
        return [os.path.basename(p) for p in self.cycle(n)]

    def bytes_of(self, n):
        return sum(self.sizes[p] for p in self.cycle(n))


class Bench:
    def __init__(self, args):
        self.args = args
        self.bootstrap = args.bootstrap
        # A registry of its own: one shared with other GStreamer processes
        # is rescanned whenever they use other plugin paths, inside the
        # timed runs.
        self.env = dict(os.environ, GST_PLUGIN_PATH=str(Path(args.plugin_dir).resolve()),
                        GST_REGISTRY=str(Path(args.work_dir).resolve() / "registry.bin"))
        self.main_set = FrameSet(f"main={args.frames_dir}:{args.records}")
        self.main_set.frames = self.main_set.frames[: args.frames]
        self.frames = self.main_set.frames
        self.sets = [FrameSet(spec) for spec in args.size_set] or [self.main_set]
        self.records = args.records
        # The pure-Python clients are two orders of magnitude slower: they
        # get fewer records so that the run stays within minutes.
        self.slow_records = min(args.records, args.slow_records)
        self.results = {}
        self.topic_seq = 0
        self.newer_librdkafka = self.link_newer_librdkafka()
        # Let GStreamer rescan its registry now rather than in a timed run.
        subprocess.run(["gst-inspect-1.0", "kafka"], env=self.env, check=True, stdout=subprocess.DEVNULL)

    def link_newer_librdkafka(self):
        """A directory where kcat finds confluent-kafka's librdkafka (2.16)
        instead of Debian's (2.0.2): kcat's own cost apart from its
        librdkafka's. None when the wheel has no separate library."""
        import confluent_kafka

        libs = sorted((Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs").glob("librdkafka*.so*"))
        if not libs:
            return None
        directory = Path(self.args.work_dir).resolve() / "librdkafka"
        directory.mkdir(exist_ok=True)
        (directory / "librdkafka.so.1").unlink(missing_ok=True)
        (directory / "librdkafka.so.1").symlink_to(libs[0])
        return directory

    def topic(self, name, partitions=1, max_message_bytes=RAISED_LIMIT):
        self.topic_seq += 1
        topic = f"bench-{name}-{os.getpid()}-{self.topic_seq}"
        subprocess.run([str(EXAMPLES / "kafka-topics"), "--bootstrap-server", self.bootstrap, "create", topic,
                        "--partitions", str(partitions), "--replication-factor", "1",
                        "--max-message-bytes", str(max_message_bytes)],
                       check=True, stdout=subprocess.DEVNULL)
        return topic

    def delete_topic(self, topic):
        subprocess.run([str(EXAMPLES / "kafka-topics"), "--bootstrap-server", self.bootstrap, "delete", topic],
                       check=True, stdout=subprocess.DEVNULL)

    def cycle(self, n):
        return self.main_set.cycle(n)

    def bytes_of(self, n):
        return self.main_set.bytes_of(n)

    def count_for(self, name, frame_set=None):
        records = (frame_set or self.main_set).records
        return min(records, self.slow_records) if name.startswith("kafka-python") else records

    def record_count(self, topic):
        out = subprocess.run(["kcat", "-Q", "-b", self.bootstrap, "-t", f"{topic}:0:-1"],
                             capture_output=True, text=True, check=True).stdout
        return int(out.split()[-1])

    # Case 1 and 5: ingest

    def ingest_commands(self, topic, frame_set, n, extra=True):
        """Every producer publishing n records of frame_set to topic, all
        with acks=all and idempotence on (kafka-python has no idempotence);
        linger is each client's default (kafkasink's automatic one is 5 ms,
        20 in 500 kB batches, for multifilesrc, which is not live; librdkafka 5 ms)
        except confluent-kafka's 5 ms, set as before. With extra, also the
        slow and header-less variants."""
        fs = frame_set
        pattern = str(fs.dir / "f-%05d.jpg")
        gst = ["gst-launch-1.0", "-q", "multifilesrc", f"location={pattern}", f"stop-index={len(fs.frames) - 1}",
               "loop=true", f"num-buffers={n}", "caps=image/jpeg", "!", "kafkasink", f"topic={topic}",
               f"bootstrap-servers={self.bootstrap}"]
        commands = {
            "kafkasink": gst,
            "kcat -P": ["kcat", "-P", "-b", self.bootstrap, "-t", topic, "-X", "message.max.bytes=16777216",
                        "-X", "enable.idempotence=true", "-X", "acks=all"] + fs.names(n),
            "confluent-kafka Producer": [PY, str(HERE / "producers.py"), "ingest-confluent", self.bootstrap,
                                         topic] + fs.names(n),
        }
        if self.newer_librdkafka:
            commands["kcat -P, librdkafka 2.16"] = ["env", f"LD_LIBRARY_PATH={self.newer_librdkafka}"] + \
                commands["kcat -P"]
        if extra:
            commands["kafkasink write-headers=false"] = gst + ["write-headers=false"]
            commands["kafka-python KafkaProducer"] = [PY, str(HERE / "producers.py"), "ingest-kafka-python",
                                                      self.bootstrap, topic] + fs.names(min(n, self.slow_records))
        return commands

    def ingest(self):
        """The ingest table by frame size; returns kcat's last topic of the
        main frame set, the input of the consume case."""
        kept = None
        self.results["ingest"] = {}
        # One unmeasured round first: the first run of a tool against a new
        # broker is slower (connections, broker JIT, page cache).
        for name, command in self.ingest_commands("x", self.sets[0], 10).items():
            topic = self.topic("warm-up")
            timed(self.ingest_commands(topic, self.sets[0], 10)[name], self.env, cwd=self.sets[0].dir)
            self.delete_topic(topic)
        for fs in self.sets:
            extra = fs.label == self.args.extra_set
            runs = {}
            names = list(self.ingest_commands("x", fs, 1, extra))
            for round_ in range(self.args.rounds):
                # Alternate the order every round so drift in the machine's
                # state does not favour one tool.
                order = names if round_ % 2 == 0 else list(reversed(names))
                for name in order:
                    n = self.count_for(name, fs)
                    topic = self.topic("ingest")
                    wall, cpu = timed(self.ingest_commands(topic, fs, n, extra)[name], self.env, cwd=fs.dir)
                    count = self.record_count(topic)
                    if count != n:
                        raise RuntimeError(f"{name} wrote {count} records instead of {n}")
                    runs.setdefault(name, []).append((wall, cpu))
                    log(f"ingest {fs.label} {name}: {n / wall:.1f} records/s, {cpu:.2f} CPU s")
                    # kcat's last topic is the input of the consume case.
                    if (name == "kcat -P" and fs.label == self.args.extra_set and kept is None
                            and round_ == self.args.rounds - 1):
                        kept = topic
                    else:
                        self.delete_topic(topic)
            producers = {name: self.rates(name, r, fs) for name, r in runs.items()}
            for name, m in producers.items():
                topic = self.topic("polls")
                counted = polls(self.ingest_commands(topic, fs, m["records"], extra)[name], self.env,
                                self.args.work_dir, cwd=fs.dir)
                self.delete_topic(topic)
                m["polls_per_frame"] = None if counted is None else counted / m["records"]
                log(f"ingest {fs.label} {name}: {counted} poll calls")
            self.results["ingest"][fs.label] = {"mean_kb": fs.mean_kb, "producers": producers}
        return kept

    def startup(self):
        """Each producer publishing a single record: its start-up and
        shut-down, apart from the per-record cost."""
        fs = self.sets[0]
        names = list(self.ingest_commands("x", fs, 1, False))
        runs = {}
        for round_ in range(self.args.rounds):
            order = names if round_ % 2 == 0 else list(reversed(names))
            for name in order:
                topic = self.topic("startup")
                wall, cpu = timed(self.ingest_commands(topic, fs, 1, False)[name], self.env, cwd=fs.dir)
                if self.record_count(topic) != 1:
                    raise RuntimeError(f"{name} did not write its record")
                self.delete_topic(topic)
                runs.setdefault(name, []).append((wall, cpu))
        self.results["startup"] = {
            name: {"wall_ms": [w * 1000 for w, _ in r], "cpu_ms": [c * 1000 for _, c in r]}
            for name, r in runs.items()
        }

    def rates(self, name, runs, frame_set=None):
        fs = frame_set or self.main_set
        n = self.count_for(name, fs)
        size = fs.bytes_of(n)
        return {
            "records": n,
            "records_per_s": [n / w for w, _ in runs],
            "mb_per_s": [size / w / 1e6 for w, _ in runs],
            "cpu_s_per_1000": [c / n * 1000 for _, c in runs],
        }

    # Case 2: consume

    def consume(self, topic, fs):
        # Each reader reports what it read, counted from its output: a line
        # per buffer (fakesink's last-message), per record (kcat's offset),
        # or the total (the kafka-python script).
        commands = {
            "kafkasrc ! fakesink": (["gst-launch-1.0", "-v", "kafkasrc", f"topic={topic}",
                                    f"bootstrap-servers={self.bootstrap}", "start-from=earliest", "stop-at=end",
                                    "!", "fakesink", "silent=false"],
                                   lambda out: sum(": last-message = chain" in line for line in out.splitlines())),
            "kcat -C": (["kcat", "-C", "-b", self.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
                         "-f", "%o\\n", "-X", "fetch.max.bytes=67108864", "-X", "max.partition.fetch.bytes=16777216"],
                        lambda out: sum(1 for line in out.splitlines() if line.strip())),
            "kafka-python KafkaConsumer": ([PY, str(HERE / "producers.py"), "consume-kafka-python", self.bootstrap,
                                            topic, str(self.count_for("kafka-python", fs))],
                                           lambda out: int(out.split()[-1])),
        }
        runs = {}
        for round_ in range(self.args.rounds):
            names = list(commands) if round_ % 2 == 0 else list(reversed(commands))
            for name in names:
                command, count = commands[name]
                output = []
                wall, cpu = timed(command, self.env, output)
                read = count(output[0])
                if read != self.count_for(name, fs):
                    raise RuntimeError(f"{name} read {read} records instead of {self.count_for(name, fs)}")
                runs.setdefault(name, []).append((wall, cpu))
                log(f"consume {name}: {self.count_for(name, fs) / wall:.1f} records/s")
        self.delete_topic(topic)
        self.results["consume"] = {name: self.rates(name, r, fs) for name, r in runs.items()}

    # Case 6: frames over the record limit

    def broker_limit(self, limit):
        """Sets every broker's message.max.bytes (a dynamic per-broker
        setting), as a stock broker (1 MB) or a raised one has it."""
        from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                           ResourceType)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        entry = ConfigEntry("message.max.bytes", str(limit), incremental_operation=AlterConfigOpType.SET)
        brokers = [ConfigResource(ResourceType.BROKER, str(b), incremental_configs=[entry])
                   for b in admin.list_topics(timeout=10).brokers]
        for broker in brokers:
            for future in admin.incremental_alter_configs([broker]).values():
                future.result()
        # The brokers apply it asynchronously: wait until each describes it.
        deadline = time.monotonic() + 30
        for broker in brokers:
            described = ConfigResource(ResourceType.BROKER, broker.name)
            while next(iter(admin.describe_configs([described]).values())).result()[
                    "message.max.bytes"].value != str(limit):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"broker {broker.name} does not take message.max.bytes={limit}")
                time.sleep(0.1)

    def chunked(self):
        frames = sorted(str(p) for p in Path(self.args.frames_4k_dir).glob("f-*.jpg"))
        sizes = [os.path.getsize(p) for p in frames]
        n = self.args.records_4k
        frame_bytes = sum(sizes[i % len(sizes)] for i in range(n))
        pattern = str(Path(self.args.frames_4k_dir) / "f-%05d.jpg")
        modes = {
            "1 MB limits, chunked": (STOCK_LIMIT, []),
            "16 MiB limits, chunking=off": (RAISED_LIMIT, ["chunking=off"]),
            # librdkafka's own default, which kafkasink's four replaced
            # (docs/design.md, "Requests in flight").
            "1 MB limits, chunked, 5 requests in flight": (
                STOCK_LIMIT, ["config=config,max.in.flight.requests.per.connection=(string)5"]),
        }
        runs = {}
        for round_ in range(self.args.rounds + 1):
            names = list(modes) if round_ % 2 == 0 else list(reversed(modes))
            for name in names:
                limit, extra = modes[name]
                self.broker_limit(limit)
                topic = self.topic("4k", max_message_bytes=limit)
                ingest = ["gst-launch-1.0", "-q", "multifilesrc", f"location={pattern}",
                          f"stop-index={len(frames) - 1}", "loop=true", f"num-buffers={n}", "caps=image/jpeg",
                          "!", "kafkasink", f"topic={topic}", f"bootstrap-servers={self.bootstrap}"] + extra
                wall_in, cpu_in = timed(ingest, self.env)
                records = self.record_count(topic)
                consume = ["gst-launch-1.0", "-v", "kafkasrc", f"topic={topic}",
                           f"bootstrap-servers={self.bootstrap}", "start-from=earliest", "stop-at=end", "!",
                           "fakesink", "silent=false"]
                output = []
                wall_out, cpu_out = timed(consume, self.env, output)
                read = sum(": last-message = chain" in line for line in output[0].splitlines())
                self.delete_topic(topic)
                if read != n:
                    raise RuntimeError(f"{name}: kafkasrc pushed {read} frames instead of {n}")
                log(f"4K {name}: {records} records, ingest {n / wall_in:.1f} frames/s, "
                    f"consume {n / wall_out:.1f} frames/s")
                # The first round warms the broker and the page cache up.
                if round_ > 0:
                    runs.setdefault(name, []).append((records, wall_in, cpu_in, wall_out, cpu_out))
        counted_polls = {}
        for name, (limit, extra) in modes.items():
            self.broker_limit(limit)
            topic = self.topic("4k-polls", max_message_bytes=limit)
            counted = polls(["gst-launch-1.0", "-q", "multifilesrc", f"location={pattern}",
                             f"stop-index={len(frames) - 1}", "loop=true", f"num-buffers={n}", "caps=image/jpeg",
                             "!", "kafkasink", f"topic={topic}", f"bootstrap-servers={self.bootstrap}"] + extra,
                            self.env, self.args.work_dir)
            self.delete_topic(topic)
            counted_polls[name] = None if counted is None else counted / n
            log(f"4K {name}: {counted} poll calls")
        latency = {name: self.paced_4k(frames, *modes[name]) for name in list(modes)[:2]}
        self.broker_limit(RAISED_LIMIT)
        self.results["chunked"] = {
            "latency": latency,
            "frames": n,
            "frame_mb_mean": frame_bytes / n / 1e6,
            "frame_mb_min": min(sizes) / 1e6,
            "frame_mb_max": max(sizes) / 1e6,
            "modes": {
                name: {
                    "records": [r[0] for r in rs],
                    "ingest_frames_per_s": [n / r[1] for r in rs],
                    "ingest_mb_per_s": [frame_bytes / r[1] / 1e6 for r in rs],
                    "ingest_cpu_s_per_1000": [r[2] / n * 1000 for r in rs],
                    "consume_frames_per_s": [n / r[3] for r in rs],
                    "consume_mb_per_s": [frame_bytes / r[3] / 1e6 for r in rs],
                    "consume_cpu_s_per_1000": [r[4] / n * 1000 for r in rs],
                    "polls_per_frame": counted_polls[name],
                }
                for name, rs in ((name, runs[name]) for name in modes)
            },
        }

    def paced_4k(self, frames, limit, extra):
        """A 30 fps stream of the 4K frames (imagesequencesrc, paced by the
        clock) through kafkasink, the broker, kafkasrc and mjpeghttpsink to
        one HTTP client: frames/s and latency from the record timestamp
        (the time the frame was published) to the whole frame at the
        client."""
        seconds = self.args.latency_seconds
        sequence = Path(self.args.work_dir) / f"seq-4k-{limit}"
        sequence.mkdir(exist_ok=True)
        count = 30 * (seconds + 8)
        for i in range(count):
            link = sequence / f"f-{i:05d}.jpg"
            if not link.exists():
                link.symlink_to(frames[i % len(frames)])
        self.broker_limit(limit)
        topic = self.topic("4k-paced", max_message_bytes=limit)
        port = free_port()
        server = self.viewer("kafkasrc ! mjpeghttpsink", topic, port)
        producer = None
        try:
            wait_port(port, server)
            producer = subprocess.Popen(
                ["gst-launch-1.0", "-q", "imagesequencesrc", f"location={sequence}/f-%05d.jpg", "start-index=0",
                 f"stop-index={count - 1}", "framerate=30/1", "!", "identity", "sync=true", "!", "kafkasink",
                 f"topic={topic}", f"bootstrap-servers={self.bootstrap}"] + extra,
                env=self.env, stderr=subprocess.DEVNULL)
            path = str(Path(self.args.work_dir) / f"latency-4k-{limit}.txt")
            result = self.clients(port, 1, seconds, latencies=path)
        finally:
            if producer:
                stop(producer, signal.SIGINT)
            stop(server)
            self.delete_topic(topic)
        log(f"4K paced, limit {limit}: {result['fps_median']:.1f} fps, p50 {result['latency_ms_p50']:.1f} ms, "
            f"p99 {result['latency_ms_p99']:.1f} ms")
        return result

    # Case 3: fan-out

    def viewer(self, kind, topic, port):
        if kind == "kafkasrc ! mjpeghttpsink":
            cmd = ["gst-launch-1.0", "-q", "kafkasrc", f"topic={topic}", f"bootstrap-servers={self.bootstrap}",
                   "!", "mjpeghttpsink", f"port={port}"]
        else:
            mode = "threaded" if "threaded" in kind else "single"
            cmd = [PY, str(HERE / "tutorial_app.py"), self.bootstrap, topic, str(port), mode]
        return subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def live_producer(self, topic, seconds):
        return subprocess.Popen([PY, str(HERE / "producers.py"), "live", self.bootstrap, topic, "30", str(seconds)]
                                + self.frames[:30], env=self.env, stderr=subprocess.DEVNULL)

    def clients(self, port, count, seconds, latencies=None):
        cmd = [str(EXAMPLES / "mjpeg-clients"), f"http://127.0.0.1:{port}/video_feed", "--clients", str(count),
               "--seconds", str(seconds), "--warmup-ms", "2000"]
        if latencies:
            cmd += ["--latencies", latencies]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
        return json.loads(out.strip().splitlines()[-1])

    def fanout(self):
        viewers = ["kafkasrc ! mjpeghttpsink", "tutorial Flask (threaded)", "tutorial Flask (single-threaded)"]
        counts = [c for c in CLIENT_COUNTS if c <= self.args.max_clients]
        self.results["fanout"] = {}
        for kind in viewers:
            for count in counts:
                topic = self.topic("live")
                port = free_port()
                server = self.viewer(kind, topic, port)
                producer = None
                try:
                    wait_port(port, server)
                    # The clients' 2 s warm-up covers the producer's start.
                    producer = self.live_producer(topic, FANOUT_SECONDS + 6)
                    cpu_before = proc_cpu_seconds(server.pid)
                    started = time.monotonic()
                    result = self.clients(port, count, FANOUT_SECONDS)
                    elapsed = time.monotonic() - started
                    result["server_cpu_cores"] = (proc_cpu_seconds(server.pid) - cpu_before) / elapsed
                    result["server_rss_mb"] = proc_rss_mb(server.pid)
                finally:
                    if producer:
                        stop(producer)
                    stop(server)
                    self.delete_topic(topic)
                self.results["fanout"].setdefault(kind, {})[count] = result
                log(f"fanout {kind} x{count}: median {result['fps_median']:.1f} fps, "
                    f"min {result['fps_min']:.1f}, cpu {result['server_cpu_cores']:.2f} cores")

    # Case 4: latency

    def latency(self):
        out = Path(self.args.work_dir)
        self.results["latency"] = {}
        seconds = self.args.latency_seconds

        # The whole chain with our elements: a live 1080p source, kafkasink,
        # the broker, kafkasrc, mjpeghttpsink, one HTTP client.
        topic = self.topic("latency-chain")
        port = free_port()
        producer = subprocess.Popen(
            ["gst-launch-1.0", "-q", "videotestsrc", "is-live=true", "pattern=smpte", "horizontal-speed=8", "!",
             "video/x-raw,width=1920,height=1080,framerate=30/1", "!", "jpegenc", "quality=80", "!",
             "kafkasink", f"topic={topic}", f"bootstrap-servers={self.bootstrap}"],
            env=self.env, stderr=subprocess.DEVNULL)
        server = self.viewer("kafkasrc ! mjpeghttpsink", topic, port)
        try:
            wait_port(port, server)
            path = str(out / "latency-chain.txt")
            result = self.clients(port, 1, seconds, latencies=path)
        finally:
            stop(producer, signal.SIGINT)
            stop(server)
            self.delete_topic(topic)
        self.results["latency"]["gst-kafka: videotestsrc ! jpegenc ! kafkasink → kafkasrc ! mjpeghttpsink"] = (
            result, path, "capture (videotestsrc running time), JPEG encoding included")

        # Same frames for both viewers: the paced Python producer marks each
        # pre-encoded frame with its send time.
        for kind in ["kafkasrc ! mjpeghttpsink", "tutorial Flask (threaded)"]:
            topic = self.topic("latency")
            port = free_port()
            server = self.viewer(kind, topic, port)
            producer = None
            try:
                wait_port(port, server)
                producer = self.live_producer(topic, seconds + 6)
                path = str(out / f"latency-{len(self.results['latency'])}.txt")
                result = self.clients(port, 1, seconds, latencies=path)
            finally:
                if producer:
                    stop(producer)
                stop(server)
                self.delete_topic(topic)
            self.results["latency"][f"confluent-kafka producer → {kind}"] = (
                result, path, "send time of a pre-encoded frame")
        for name, (result, _, _) in self.results["latency"].items():
            log(f"latency {name}: p50 {result['latency_ms_p50']:.1f} ms, p99 {result['latency_ms_p99']:.1f} ms")


def spread(values, digits=1):
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gst = subprocess.run(["gst-launch-1.0", "--version"], capture_output=True, text=True).stdout.splitlines()
    kcat = [line.strip() for line in subprocess.run(["kcat", "-V"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Version")]
    # kafkasink's librdkafka is the one rdkafka-sys bundles: its version
    # follows the "+" of the crate's.
    lock = (ROOT / "Cargo.lock").read_text().split("[[package]]")
    bundled = next((block.split('version = "')[1].split('"')[0].split("+")[-1] for block in lock
                    if 'name = "rdkafka-sys"' in block), "unknown")
    import confluent_kafka
    import kafka
    return [
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}",
        f"{gst[1] if len(gst) > 1 else gst}; kafkasink with librdkafka {bundled} (bundled by rdkafka-sys); "
        f"kcat {kcat[0] if kcat else '(version unknown)'}",
        f"Python {platform.python_version()}, kafka-python {kafka.__version__}, "
        f"confluent-kafka {confluent_kafka.version()[0]} (librdkafka {confluent_kafka.libversion()[0]})",
    ]


def plots(bench, docs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fanout = bench.results.get("fanout")
    if fanout:
        fig, ax = plt.subplots(figsize=(7, 4))
        for kind, by_count in fanout.items():
            counts = sorted(by_count)
            ax.plot(counts, [by_count[c]["fps_median"] for c in counts], marker="o", label=kind)
        ax.set_xscale("log")
        ax.set_xlabel("HTTP clients")
        ax.set_ylabel("frames/s per client (median)")
        ax.set_title("Fan-out of a 30 fps 1080p MJPEG stream")
        ax.axhline(30, color="grey", linewidth=0.5)
        ax.legend()
        fig.tight_layout()
        fig.savefig(docs / "bench-fanout.png", dpi=100)
        written.append("bench-fanout.png")
    latency = bench.results.get("latency")
    if latency:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, (_, path, _) in latency.items():
            values = sorted(float(v) for v in Path(path).read_text().split())
            if values:
                ax.plot(values, [i / len(values) for i in range(len(values))], label=name[:60])
        ax.set_xscale("log")
        ax.set_xlabel("latency to the HTTP client (ms)")
        ax.set_ylabel("fraction of frames")
        ax.set_title("Per-frame latency, 30 fps 1080p")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(docs / "bench-latency.png", dpi=100)
        written.append("bench-latency.png")
    return written


def polls_text(per_frame):
    return "not counted (no perf)" if per_frame is None else f"{per_frame:.1f}"


def report(bench, commit, command, elapsed):
    r = bench.results
    n = len(bench.frames)
    frame_bytes = sum(bench.main_set.sizes[p] for p in bench.frames)
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `{command}` at commit `{commit}` in {elapsed / 60:.1f} minutes, every case with its "
        "peers in the same run against the same local Apache Kafka broker (scripts/kafka.sh). "
        "Medians over the rounds, with the range in brackets.",
        "",
        "Machine: " + "; ".join(machine()),
        "",
        f"Input of the consume, fan-out and latency cases: {n} 1080p JPEG frames, "
        f"{frame_bytes / n / 1000:.0f} KB on average (videotestsrc SMPTE bars with motion and 1 % noise, "
        "jpegenc quality 80). The ingest table adds frame sets from 640×360 to 1080p noise "
        "(scripts/bench.sh makes them).",
        "",
    ]
    targets = []
    if "ingest" in r:
        lines += ["## 1. Ingest by frame size (and 5. cost of our headers)", "",
                  "Pre-made JPEG files published as fast as possible to a topic created beforehand (one partition), "
                  "acks=all and idempotence on for every client (kafka-python: acks=all, no idempotence). "
                  "Linger is each client's default: 5 ms for kcat (librdkafka) and confluent-kafka, and for "
                  "kafkasink, whose automatic linger is 5 ms when upstream is not live, as multifilesrc is (20 ms in its 500 kB "
                  "batches below, 1 ms when live); "
                  "kafkasink then also keeps at most 2 MB unacknowledged, in batches of 500 kB when its first frame is of "
                  "100-200 kB and of 1 MB otherwise (docs/design.md, \"Running ahead\"). "
                  "Debian's kcat links librdkafka 2.0.2, kafkasink bundles 2.12.1: \"kcat -P, librdkafka 2.16\" is "
                  "the same kcat run against confluent-kafka's newer librdkafka, which tells the tool's cost from "
                  "its librdkafka's. "
                  f"{bench.args.rounds} rounds, the order of the producers alternating; medians with the range. "
                  "Each run is a whole process: start-up, publishing, and the wait for the last acknowledgement "
                  "(start-up alone is in the next table). CPU is user + system time of the process. "
                  "poll(2) calls per frame: one more run of each, untimed, under `perf stat -e "
                  "syscalls:sys_enter_poll,syscalls:sys_enter_ppoll` (every thread of the process): librdkafka's "
                  "broker thread waits in poll, and one that wakes without being allowed to send makes millions "
                  "(docs/design.md, \"Requests in flight\" and \"Running ahead\"); kafka-python waits in epoll, which is not counted.", "",
                  "| frames | producer | records per run | records/s | MB/s | CPU s per 1000 frames | poll(2) calls per frame |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        notes = []
        for label, entry in r["ingest"].items():
            for name, m in entry["producers"].items():
                lines.append(f"| {label} ({entry['mean_kb']:.0f} KB) | {name} | {m['records']} | "
                             f"{spread(m['records_per_s'])} | {spread(m['mb_per_s'])} | "
                             f"{spread(m['cpu_s_per_1000'], 2)} | {polls_text(m.get('polls_per_frame'))} |")
            sink, kcat = entry["producers"]["kafkasink"], entry["producers"]["kcat -P"]
            ratio = statistics.median(sink["records_per_s"]) / statistics.median(kcat["records_per_s"])
            targets.append((f"{label}: kafkasink / kcat -P records/s", ratio, ratio >= 1.0, "≥ 1.0"))
            cpu = statistics.median(sink["cpu_s_per_1000"]) / statistics.median(kcat["cpu_s_per_1000"])
            targets.append((f"{label}: kafkasink / kcat -P CPU per frame", cpu, cpu <= 1.0, "≤ 1.0"))
            # The same ratios round by round: the two runs of a round are
            # neighbours in time, so the broker's drift between rounds
            # mostly cancels out.
            paired = [a / b for a, b in zip(sink["records_per_s"], kcat["records_per_s"])]
            paired_cpu = [a / b for a, b in zip(sink["cpu_s_per_1000"], kcat["cpu_s_per_1000"])]
            notes.append(f"kafkasink / kcat -P round by round ({label}): records/s {spread(paired, 2)}, "
                         f"CPU per frame {spread(paired_cpu, 2)} (medians of the {len(paired)} rounds' ratios).")
            headerless = entry["producers"].get("kafkasink write-headers=false")
            if headerless:
                overhead = statistics.median(headerless["records_per_s"]) / statistics.median(sink["records_per_s"])
                notes.append(f"Headers on vs off ({label}): write-headers=false runs at {overhead:.2f}× the "
                             "records/s of the default (caps, timing, flags and sequence on every record).")
        lines += [""] + [line for note in notes for line in (note, "")]
        lines += ["Where kafkasink's CPU goes, every thread of `multifilesrc ! kafkasink` publishing the 338 KB "
                  "frames (`scripts/flamegraph.sh`; open the SVG to zoom):", "",
                  "![CPU flame graph of multifilesrc ! kafkasink](kafkasink-flamegraph.svg)", ""]
    if "startup" in r:
        lines += ["### Start-up", "",
                  "One record published by a fresh process (the smallest frames): start-up, connection, topic "
                  "check and shut-down, which every run of the table above includes once.", "",
                  "| producer | wall ms | CPU ms |", "| --- | --- | --- |"]
        for name, m in r["startup"].items():
            lines.append(f"| {name} | {spread(m['wall_ms'], 0)} | {spread(m['cpu_ms'], 0)} |")
        lines.append("")
    if "consume" in r:
        lines += ["## 2. Consume", "", "kcat's last ingest topic read from the beginning to the end "
                  "(kafka-python: its first records only).", "",
                  "| consumer | records per run | records/s | MB/s | CPU s per 1000 frames |",
                  "| --- | --- | --- | --- | --- |"]
        for name, m in r["consume"].items():
            lines.append(f"| {name} | {m['records']} | {spread(m['records_per_s'])} | {spread(m['mb_per_s'])} | "
                         f"{spread(m['cpu_s_per_1000'])} |")
        ratio = statistics.median(r["consume"]["kafkasrc ! fakesink"]["records_per_s"]) / statistics.median(
            r["consume"]["kcat -C"]["records_per_s"])
        targets.append(("consume kafkasrc / kcat -C records/s", ratio, ratio >= 1.5, "≥ 1.5"))
        lines.append("")
    if "fanout" in r:
        lines += ["## 3. Fan-out", "",
                  f"A 30 fps stream of those frames (a paced producer) served to N clients reading as fast as "
                  f"they can for {FANOUT_SECONDS} s after a 2 s warm-up (examples/mjpeg-clients.rs on loopback). "
                  "Server CPU in cores over the window, resident memory at its end.", "",
                  "![frames/s per client vs clients](bench-fanout.png)", "",
                  "| viewer | clients | fps per client min / median / max | errors | server CPU (cores) | RSS MB |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for kind, by_count in r["fanout"].items():
            for count, m in sorted(by_count.items()):
                lines.append(f"| {kind} | {count} | {m['fps_min']:.1f} / {m['fps_median']:.1f} / {m['fps_max']:.1f} | "
                             f"{m['errors']} | {m['server_cpu_cores']:.2f} | {m['server_rss_mb']:.0f} |")
        ours = r["fanout"]["kafkasrc ! mjpeghttpsink"].get(100)
        if ours:
            ok = ours["fps_min"] >= 29 and ours["server_cpu_cores"] < 1.0
            targets.append(("100 clients: min fps per client, viewer cores",
                            f"{ours['fps_min']:.1f} fps, {ours['server_cpu_cores']:.2f} cores", ok,
                            "≥ 29 fps, < 1 core"))
        lines.append("")
    if "latency" in r:
        lines += ["## 4. Latency", "",
                  "Per-frame latency from capture (or send) to the arrival of the whole frame at one HTTP client.",
                  "", "![latency distribution](bench-latency.png)", "",
                  "| path | measured from | p50 ms | p99 ms | max ms | frames |", "| --- | --- | --- | --- | --- | --- |"]
        for name, (m, _, origin) in r["latency"].items():
            lines.append(f"| {name} | {origin} | {m['latency_ms_p50']:.1f} | {m['latency_ms_p99']:.1f} | "
                         f"{m['latency_ms_max']:.1f} | {m['frames']} |")
        chain = next(iter(r["latency"].values()))[0]
        targets.append(("p99 camera-to-client latency (whole chain)", f"{chain['latency_ms_p99']:.1f} ms",
                        chain["latency_ms_p99"] < 30, "< 30 ms"))
        lines.append("")
    if "chunked" in r:
        c = r["chunked"]
        lines += ["## 6. Frames over the record limit (chunking)", "",
                  f"{c['frames']} 4K JPEG frames per run (3840×2160, jpegenc quality 95, "
                  f"{c['frame_mb_min']:.1f}–{c['frame_mb_max']:.1f} MB, {c['frame_mb_mean']:.1f} MB on average), "
                  "published as fast as possible by `multifilesrc ! kafkasink`, then read back to the end by "
                  "`kafkasrc ! fakesink`: through a topic and broker with Kafka's stock limits "
                  f"(max.message.bytes and message.max.bytes {STOCK_LIMIT}), where kafkasink cuts each frame "
                  "into chunk records and kafkasrc puts them together again, against the same stream "
                  f"with both limits raised to {RAISED_LIMIT} and chunking=off. {bench.args.rounds} rounds "
                  "after a warm-up round, order alternating; each run includes the process's start-up "
                  "(and, for ingest, the wait for the last acknowledgement). The third row is the first with "
                  "librdkafka's default of five requests in flight, which kafkasink sets to four "
                  "(docs/design.md, \"Requests in flight\"). poll(2) calls per frame: one more ingest run of "
                  "each, untimed, under `perf stat -e syscalls:sys_enter_poll,syscalls:sys_enter_ppoll`.", "",
                  "| limits | records per run | ingest frames/s | ingest MB/s | ingest CPU s per 1000 frames | "
                  "ingest poll(2) calls per frame | consume frames/s | consume MB/s | consume CPU s per 1000 frames |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, m in c["modes"].items():
            lines.append(f"| {name} | {statistics.median(m['records']):.0f} | "
                         f"{spread(m['ingest_frames_per_s'])} | {spread(m['ingest_mb_per_s'])} | "
                         f"{spread(m['ingest_cpu_s_per_1000'])} | {polls_text(m.get('polls_per_frame'))} | "
                         f"{spread(m['consume_frames_per_s'])} | "
                         f"{spread(m['consume_mb_per_s'])} | {spread(m['consume_cpu_s_per_1000'])} |")
        lines += ["", f"The same frames as a 30 fps stream (imagesequencesrc paced by the clock) for "
                  f"{bench.args.latency_seconds} s after a 2 s warm-up, through kafkasink, the broker, kafkasrc "
                  "and mjpeghttpsink to one HTTP client (examples/mjpeg-clients.rs): frames/s at the client and "
                  "latency from the record timestamp (when the frame was published) to the whole frame at the "
                  "client.", "",
                  "| limits | frames/s at the client | p50 ms | p99 ms | max ms | frames |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for name, m in c["latency"].items():
            lines.append(f"| {name} | {m['fps_median']:.1f} | {m['latency_ms_p50']:.1f} | "
                         f"{m['latency_ms_p99']:.1f} | {m['latency_ms_max']:.1f} | {m['frames']} |")
        chunked, whole = c["modes"]["1 MB limits, chunked"], c["modes"]["16 MiB limits, chunking=off"]
        for step in ["ingest", "consume"]:
            ratio = statistics.median(chunked[f"{step}_frames_per_s"]) / statistics.median(
                whole[f"{step}_frames_per_s"])
            targets.append((f"4K {step}, chunked / unchunked frames/s", ratio, ratio >= 0.9, "≥ 0.9"))
        lines.append("")
    lines += ["## Targets", "", "| target | measured | goal | result |", "| --- | --- | --- | --- |"]
    for name, value, ok, goal in targets:
        shown = f"{value:.2f}×" if isinstance(value, float) else value
        lines.append(f"| {name} | {shown} | {goal} | {'PASS' if ok else 'FAIL'} |")
    lines += ["", "## Commands", "", "Each case's exact commands are in scripts/bench/bench.py "
              "(`ingest_commands`, `startup`, `polls`, `consume`, `viewer`, `live_producer`, `latency`, `chunked`, `paced_4k`); the peers are "
              "scripts/bench/producers.py and scripts/bench/tutorial_app.py (the tutorial's Flask consumer "
              "as written: one shared KafkaConsumer, boundary before each frame, no Content-Length).", ""]
    return "\n".join(lines), targets


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--frames-dir", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--records", type=int, default=1800)
    parser.add_argument("--slow-records", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-clients", type=int, default=500)
    parser.add_argument("--latency-seconds", type=int, default=20)
    parser.add_argument("--frames-4k-dir")
    parser.add_argument("--records-4k", type=int, default=150)
    parser.add_argument("--size-set", action="append", default=[],
                        help="label=directory:records, a frame size of the ingest table (repeatable)")
    parser.add_argument("--extra-set", default="main",
                        help="the frame set also published by the slow and header-less variants, and read back "
                             "by the consume case")
    parser.add_argument("--plugin-dir", default=str(RELEASE), help="where libgstkafka.so is")
    parser.add_argument("--cases", default="ingest,startup,consume,fanout,latency,chunked")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--command", default="scripts/bench.sh")
    args = parser.parse_args()
    cases = args.cases.split(",")
    started = time.monotonic()
    bench = Bench(args)
    if "ingest" in cases or "consume" in cases:
        topic = bench.ingest()
        if "consume" in cases:
            bench.consume(topic, next(fs for fs in bench.sets if fs.label == args.extra_set))
    if "startup" in cases:
        bench.startup()
    if "fanout" in cases:
        bench.fanout()
    if "latency" in cases:
        bench.latency()
    if "chunked" in cases:
        bench.chunked()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    (Path(args.work_dir) / "results.json").write_text(json.dumps(bench.results, indent=1, default=str))
    text, targets = report(bench, commit, args.command, time.monotonic() - started)
    docs = Path(args.out).parent
    plots(bench, docs)
    Path(args.out).write_text(text)
    for name, value, ok, goal in targets:
        shown = f"{value:.2f}" if isinstance(value, float) else value
        print(f"{'PASS' if ok else 'FAIL'}: {name}: {shown} (goal {goal})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

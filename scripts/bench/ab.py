# SPDX-License-Identifier: MPL-2.0
"""Two or more builds of the plugin side by side (and kcat -P as the
baseline): the same pre-made JPEG files published by
`multifilesrc ! kafkasink` with each build, rounds in alternating order,
medians of records/s and CPU s per 1000 frames. For telling whether a
change to kafkasink's per-buffer path helps, where a whole scripts/bench.sh
run is too coarse.

    scripts/bench/ab.py --bootstrap HOST:PORT --frames DIR --records N \\
        [--rounds 15] [--max-message-bytes B] before=DIR 'after=DIR [PROPERTY=VALUE …]'

Each NAME=DIR is a directory holding a libgstkafka.so (e.g. a copy of
target/release/libgstkafka.so built at another commit), optionally followed
by kafkasink properties for that entry, as gst-launch-1.0 takes them (e.g.
`'linger5=target/release linger-ms=5'`). Uses
target/release/examples/kafka-topics; run beside no other Kafka broker
(scripts/lib.sh, only_one_broker).
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import EXAMPLES, timed


def topics(bootstrap, *args):
    subprocess.run([str(EXAMPLES / "kafka-topics"), "--bootstrap-server", bootstrap, *args], check=True,
                   stdout=subprocess.DEVNULL)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--frames", required=True, help="a directory of f-00000.jpg, f-00001.jpg, …")
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--max-message-bytes", default="16777216", help="the topic's record limit")
    parser.add_argument("builds", nargs="+", metavar="NAME=DIR")
    args = parser.parse_args()

    frames = sorted(Path(args.frames).glob("f-*.jpg"))
    if not frames:
        sys.exit(f"ab: no f-*.jpg in {args.frames}")
    builds = {}
    for build in args.builds:
        name, spec = build.split("=", 1)
        path, *properties = shlex.split(spec)
        builds[name] = (path, properties)
    registries = tempfile.TemporaryDirectory()
    # A registry per build: one shared by all would be rebuilt at every run.
    envs = {name: dict(os.environ, GST_PLUGIN_PATH=str(Path(path).resolve()), GST_REGISTRY=f"{registries.name}/{index}.bin")
            for index, (name, (path, _)) in enumerate(builds.items())}
    # By name, run in the frames' directory: tens of thousands of whole paths
    # can pass the kernel's 2 MB limit on a command line.
    files = [frames[i % len(frames)].name for i in range(args.records)]
    for env in envs.values():
        # Fills the build's registry before anything is timed.
        subprocess.run(["gst-inspect-1.0", "kafkasink"], env=env, check=True, stdout=subprocess.DEVNULL)

    def command(name, topic):
        if name == "kcat -P":
            return ["kcat", "-P", "-b", args.bootstrap, "-t", topic, "-X", "message.max.bytes=16777216",
                    "-X", "enable.idempotence=true", "-X", "acks=all"] + files
        return ["gst-launch-1.0", "-q", "multifilesrc", f"location={Path(args.frames).resolve()}/f-%05d.jpg",
                f"stop-index={len(frames) - 1}", "loop=true", f"num-buffers={args.records}", "caps=image/jpeg",
                "!", "kafkasink", f"topic={topic}", f"bootstrap-servers={args.bootstrap}", *builds[name][1]]

    names = list(builds) + ["kcat -P"]

    def run(name, label):
        """One timed run of `name` into a topic of its own: wall and CPU s."""
        topic = f"ab-{os.getpid()}-{label}-{names.index(name)}"
        topics(args.bootstrap, "create", topic, "--partitions", "1", "--replication-factor", "1",
               "--max-message-bytes", args.max_message_bytes)
        timing = timed(command(name, topic), envs.get(name), cwd=args.frames)
        topics(args.bootstrap, "delete", topic)
        return timing

    runs = {name: [] for name in names}
    # One unmeasured run of each first: the first runs against a fresh
    # broker are slower (connections, the broker's JIT, the page cache).
    for name in names:
        run(name, "warm-up")
    for round_ in range(args.rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            wall, cpu = run(name, round_)
            runs[name].append((args.records / wall, cpu / args.records * 1000))
            print(f"{name}: {args.records / wall:.1f} records/s, {cpu / args.records * 1000:.3f} CPU s/1000",
                  file=sys.stderr)

    print(f"{args.records} records of {args.frames}, medians of {args.rounds} rounds in alternating order")
    print("| producer | records/s | CPU s per 1000 frames |")
    print("| --- | --- | --- |")
    for name, values in runs.items():
        rate = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"| {name} | {rate:.1f} ({min(v[0] for v in values):.1f}–{max(v[0] for v in values):.1f}) "
              f"| {cpu:.3f} ({min(v[1] for v in values):.3f}–{max(v[1] for v in values):.3f}) |")


if __name__ == "__main__":
    main()

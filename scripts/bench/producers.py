# SPDX-License-Identifier: MPL-2.0
"""Peer producers and consumers for scripts/bench.py.

python producers.py ingest-kafka-python BOOTSTRAP TOPIC FILE...
python producers.py ingest-confluent BOOTSTRAP TOPIC FILE...
python producers.py consume-kafka-python BOOTSTRAP TOPIC COUNT
python producers.py live BOOTSTRAP TOPIC FPS SECONDS FILE...
python producers.py wall BOOTSTRAP TOPIC FPS SECONDS CAMERAS FILE...

`live` is the camera of the fan-out and latency cases: it publishes the
frames in a loop at FPS as bare record values (as the tutorial's producer
does), each marked with its send time in a JPEG comment (capture=<seconds>)
so that any viewer's latency can be measured from the bytes it serves.
`wall` is CAMERAS such cameras on one topic, each record keyed by its
camera (cam000, cam001, …), as a camera fleet shares a topic.
"""

import sys
import time


def read_frames(paths):
    frames = []
    for path in paths:
        with open(path, "rb") as f:
            frames.append(f.read())
    return frames


def ingest_kafka_python(bootstrap, topic, paths):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=[bootstrap], max_request_size=16777216, acks="all")
    for frame in read_frames(paths):
        producer.send(topic, frame)
    producer.flush()


def ingest_confluent(bootstrap, topic, paths):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 16777216,
                         "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    for frame in read_frames(paths):
        while True:
            try:
                producer.produce(topic, frame)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush()


def consume_kafka_python(bootstrap, topic, count):
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=[bootstrap], auto_offset_reset="earliest",
                             fetch_max_bytes=67108864, max_partition_fetch_bytes=16777216,
                             enable_auto_commit=False)
    seen = 0
    for _ in consumer:
        seen += 1
        if seen == count:
            break
    consumer.close()
    print(seen)


def mark(frame, when):
    comment = f"capture={when:.6f}".encode()
    return frame[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + frame[2:]


def live(bootstrap, topic, fps, seconds, paths):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 16777216, "linger.ms": 0})
    frames = read_frames(paths)
    interval = 1.0 / fps
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        due = start + n * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topic, mark(frames[n % len(frames)], time.time()))
        producer.poll(0)
        n += 1
    producer.flush()


def wall(bootstrap, topic, fps, seconds, cameras, paths):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 16777216, "linger.ms": 0})
    frames = read_frames(paths)
    keys = [f"cam{i:03d}".encode() for i in range(cameras)]
    interval = 1.0 / fps
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        frame = frames[n % len(frames)]
        for key in keys:
            while True:
                try:
                    producer.produce(topic, mark(frame, time.time()), key=key)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.poll(0)
        n += 1
    producer.flush()


def main():
    command, bootstrap, topic = sys.argv[1], sys.argv[2], sys.argv[3]
    rest = sys.argv[4:]
    if command == "ingest-kafka-python":
        ingest_kafka_python(bootstrap, topic, rest)
    elif command == "ingest-confluent":
        ingest_confluent(bootstrap, topic, rest)
    elif command == "consume-kafka-python":
        consume_kafka_python(bootstrap, topic, int(rest[0]))
    elif command == "live":
        live(bootstrap, topic, float(rest[0]), float(rest[1]), rest[2:])
    elif command == "wall":
        wall(bootstrap, topic, float(rest[0]), float(rest[1]), int(rest[2]), rest[3:])
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()

# SPDX-License-Identifier: MPL-2.0
"""The tutorial's consumer logic: kafka-python KafkaConsumer and OpenCV
imdecode. Reads COUNT records of TOPIC from the beginning and prints one JSON
line: how many it read and how many decoded, with the first frame's shape.

python tutorial_consumer.py BOOTSTRAP TOPIC COUNT
"""

import json
import sys

import cv2
import numpy as np
from kafka import KafkaConsumer

bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = KafkaConsumer(topic, bootstrap_servers=[bootstrap], auto_offset_reset="earliest",
                         consumer_timeout_ms=20000, max_partition_fetch_bytes=16777216,
                         fetch_max_bytes=67108864, enable_auto_commit=False)
read = decoded = 0
shape = None
for message in consumer:
    read += 1
    frame = cv2.imdecode(np.frombuffer(message.value, dtype=np.uint8), cv2.IMREAD_COLOR)
    if frame is not None:
        decoded += 1
        shape = shape or list(frame.shape)
    if read == count:
        break
consumer.close()
print(json.dumps({"read": read, "decoded": decoded, "shape": shape}))

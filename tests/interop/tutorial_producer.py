# SPDX-License-Identifier: MPL-2.0
"""The tutorial's producer logic: OpenCV imencode and kafka-python
KafkaProducer.send(topic, jpeg_bytes), bare values, no key, no headers.
Sends COUNT synthetic 320x240 frames and writes each JPEG to OUT_DIR/NNNN.jpg
so the test can compare what is served with what was sent.

python tutorial_producer.py BOOTSTRAP TOPIC COUNT OUT_DIR
"""

import os
import sys

import cv2
import numpy as np
from kafka import KafkaProducer

bootstrap, topic, count, out_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
producer = KafkaProducer(bootstrap_servers=[bootstrap])
for i in range(count):
    frame = np.zeros((240, 320, 3), dtype=np.uint8)
    frame[:, :, 1] = (i * 20) % 256
    cv2.rectangle(frame, (10 + i * 8, 40), (60 + i * 8, 120), (255, 255, 255), -1)
    ok, buffer = cv2.imencode(".jpeg", frame)
    assert ok
    data = buffer.tobytes()
    with open(os.path.join(out_dir, f"{i:04d}.jpg"), "wb") as f:
        f.write(data)
    producer.send(topic, data)
producer.flush()

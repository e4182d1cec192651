# SPDX-License-Identifier: MPL-2.0
"""The tutorial's consumer, as written: one module-level KafkaConsumer shared
by every request of a Flask app serving multipart/x-mixed-replace at
/video_feed (boundary before each frame, no Content-Length).

python tutorial_app.py BOOTSTRAP TOPIC PORT threaded|single
"""

import sys

from flask import Flask, Response
from kafka import KafkaConsumer

bootstrap, topic, port, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

consumer = KafkaConsumer(topic, bootstrap_servers=[bootstrap], fetch_max_bytes=67108864,
                         max_partition_fetch_bytes=16777216)
app = Flask(__name__)


@app.route("/video_feed")
def video_feed():
    return Response(get_video_stream(), mimetype="multipart/x-mixed-replace; boundary=frame")


def get_video_stream():
    for msg in consumer:
        yield b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + msg.value + b"\r\n\r\n"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=port, threaded=(mode == "threaded"))

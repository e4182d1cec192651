# The tutorial's producer.py as it prints it; only the camera address is
# changed, to the test camera (examples/test-camera.rs). Run unchanged by
# tests/tutorial.rs against a stock broker on localhost:9092.
import sys
import time
import cv2
from kafka import KafkaProducer

topic = "rtsp-stream"

def publish_camera():
    """
    Publish camera video stream to specified Kafka topic.
    Kafka Server is expected to be running on the localhost. Not partitioned.
    """

    # Start up producer
    producer = KafkaProducer(bootstrap_servers='localhost:9092')

    camera = cv2.VideoCapture("rtsp://127.0.0.1:8554/test")
    try:
        while(True):
            success, frame = camera.read()
            ret, buffer = cv2.imencode('.jpg', frame)
            producer.send(topic, buffer.tobytes())

            # Choppier stream, reduced load on processor
            time.sleep(0.2)

    except:
        print("\nExiting.")
        sys.exit(1)

    camera.release()


if __name__ == '__main__':
    publish_camera()

"""Publishing detections and camera status over ZeroMQ (see docs/messages.md)."""
from pipeline.publish.messages import (DETECTIONS_SCHEMA, STATUS_SCHEMA, MessageError, detection_topic,
                                       detections_payload, load_schema, status_payload, status_topic)
from pipeline.publish.publisher import PublishBindError, Publisher
from pipeline.publish.subscriber import Subscriber, SubscriberConnectError, format_message_line

__all__ = [
    "DETECTIONS_SCHEMA", "STATUS_SCHEMA", "MessageError", "PublishBindError", "Publisher", "Subscriber",
    "SubscriberConnectError", "detection_topic", "detections_payload", "format_message_line", "load_schema",
    "status_payload", "status_topic",
]

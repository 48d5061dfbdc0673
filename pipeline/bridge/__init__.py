"""`pipeline bridge CONFIG`: forwards what a daemon (or a relay) publishes to the brokers users
already run (MQTT, Redis Streams), in its own process, outside the detection path.

buffer.py: the bounded drop-oldest buffer each sink has; sinks.py: the Sink interface, its registry
and the thread that drives one sink (reconnect with backoff); mqtt.py, redis_streams.py: the sinks;
service.py: the ZeroMQ side and the wiring; command.py: the command line.
"""

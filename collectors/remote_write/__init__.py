"""Prometheus remote-write out: every sample the store records, sent to a Prometheus-compatible receiver.

wire (protobuf messages, snappy), series (the store's rows as dcgm-exporter-named series), settings
(the [remote_write] config table), client (HTTP) and sender (the thread that drains the store).
"""

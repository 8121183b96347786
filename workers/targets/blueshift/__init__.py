"""Blueshift trigger customer import: limits.py, client.py, s3.py (CSV staging), sink.py."""

from workers.targets.blueshift.sink import BlueshiftSink

SINK = BlueshiftSink()

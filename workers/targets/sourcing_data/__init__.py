"""ASOL DataService SourcingData v2: limits.py, client.py, sink.py."""

from workers.targets.sourcing_data.sink import SourcingDataSink

SINK = SourcingDataSink()

"""The mobile-forms Data Source API: limits.py, client.py, xml.py, sink.py."""

from workers.targets.datasource.sink import DataSourceSink

SINK = DataSourceSink()

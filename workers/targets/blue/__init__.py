"""Explorance Blue over SOAP (zeep): limits.py, client.py, sink.py and the bundled blue.wsdl."""

from workers.targets.blue.sink import BlueSink

SINK = BlueSink()

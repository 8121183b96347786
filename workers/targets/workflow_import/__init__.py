"""Workflow Import Queue API: limits.py, client.py, sink.py."""

from workers.targets.workflow_import.sink import WorkflowImportSink

SINK = WorkflowImportSink()

"""Workflow Import Queue API: limits.py, client.py, sink.py."""

from importq.settings_table import EnvSetting
from workers.targets.base import CsvColumns, Param, Target
from workers.targets.workflow_import.client import TARGET as NAME
from workers.targets.workflow_import.client import WorkflowImportClient
from workers.targets.workflow_import.limits import WorkflowImportLimits
from workers.targets.workflow_import.sink import (
    CREATION_PATH,
    QUERY_PARAMS,
    WorkflowImportSink,
    query_params,
)

SETTINGS = (
    EnvSetting(
        "WORKFLOW_IMPORT_URL",
        "",
        "the Workflow Import Queue API endpoint; each batch is one POST to it",
    ),
    EnvSetting(
        "WORKFLOW_IMPORT_API_KEY",
        "",
        "API key with the `BeginWorkflowImportProcess` permission, sent as `Authorization: "
        "apikey ...`",
        secret=True,
    ),
    EnvSetting(
        "WORKFLOW_IMPORT_CREATION_PATH",
        "",
        "`creationPath` of every batch; find this integration's batches by searching "
        "`IMPORT_QUEUE_API:<creationPath>`; `--param creationPath=X` overrides it per job",
    ),
    EnvSetting(
        "WORKFLOW_IMPORT_RECORDS_PER_BATCH",
        "1000",
        "records per import queue batch (one POST)",
    ),
    EnvSetting(
        "WORKFLOW_IMPORT_BYTES_PER_BATCH",
        "4000000",
        "bytes of one batch's JSON Lines body",
    ),
    EnvSetting(
        "WORKFLOW_IMPORT_BATCHES_IN_FLIGHT",
        "8",
        "batches being posted at once, across all workers",
    ),
    EnvSetting(
        "WORKFLOW_IMPORT_TIMEOUT",
        "120",
        "read timeout of one POST; a timeout leaves the outcome unknown",
    ),
    EnvSetting(
        "WORKFLOW_IMPORT_QUERY_PARAMS",
        "",
        "other query parameters jobs may pass with `--param` (comma-separated names, e.g. "
        "`importType`); any other `--param` but creationPath is refused",
    ),
    EnvSetting(
        "WORKFLOW_IMPORT_REPOST_UNKNOWN",
        "false",
        "`true`: post again a batch whose earlier POST got no answer (a timeout, 502 or 504; "
        "may duplicate it); `false`: dead-letter it for review",
    ),
)

TARGET = Target(
    name=NAME,
    title="Workflow Import Queue API",
    limits=WorkflowImportLimits.from_settings,
    client=WorkflowImportClient.from_settings,
    sink=WorkflowImportSink(),
    # A batch row is free-form: every CSV header column becomes a field of the same name.
    csv=CsvColumns(fields=(), other_columns="", line_breaks=False),
    params=(
        Param(
            CREATION_PATH,
            "text",
            "this job's creationPath (default "
            "WORKFLOW_IMPORT_CREATION_PATH); its batches are found by "
            "IMPORT_QUEUE_API:<creationPath>",
        ),
    ),
    params_hint=f"; another query parameter the API takes is allowed once named in {QUERY_PARAMS}",
    extra_params=query_params,
    settings=SETTINGS,
)

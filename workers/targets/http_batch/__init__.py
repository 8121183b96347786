"""A generic HTTP batch receiver (an internal API, a webhook): limits.py, answers.py, client.py,
sink.py. Units of records are POSTed as a JSON array or JSON Lines to one URL."""

from importq.settings_table import EnvSetting
from workers.targets.base import CsvColumns, Target
from workers.targets.http_batch.client import TARGET as NAME
from workers.targets.http_batch.client import HttpBatchClient
from workers.targets.http_batch.limits import HttpBatchLimits as Limits
from workers.targets.http_batch.sink import PARAMS, HttpBatchSink

SETTINGS = (
    EnvSetting("HTTP_BATCH_URL", "", "the receiver's URL; each unit of records is one POST "
               "to it (http or https; `--param path=X` posts a job to <URL>/X)"),
    EnvSetting("HTTP_BATCH_AUTH_HEADER", "Authorization",
               "the header that carries HTTP_BATCH_AUTH_SECRET"),
    EnvSetting("HTTP_BATCH_AUTH_SECRET", "", "the whole value of that header (`Bearer abc...`, "
               "`apikey abc...`); unset: no credential is sent", secret=True),
    EnvSetting("HTTP_BATCH_FORMAT", "json", "the body: `json` (an array of records) or `jsonl` "
               "(JSON Lines, one record per line)"),
    EnvSetting("HTTP_BATCH_RECORDS_PER_REQUEST", str(Limits.records_per_request),
               "records per POST"),
    EnvSetting("HTTP_BATCH_BYTES_PER_REQUEST", str(Limits.bytes_per_request),
               "bytes of one POST body"),
    EnvSetting("HTTP_BATCH_REQUESTS_IN_FLIGHT", str(Limits.requests_in_flight),
               "POSTs in progress at once, across all workers"),
    EnvSetting("HTTP_BATCH_IDEMPOTENCY_HEADER", "Idempotency-Key", "the header that carries "
               "the unit's id: the same on every attempt, so a resend is taken once"),
    EnvSetting("HTTP_BATCH_ERRORS_PATH", "", "where a 2xx answer lists refused records, as "
               "dotted keys (`errors`, `result.failed`); those are dead-lettered with the "
               "receiver's reason; unset: the receiver lists none"),
    EnvSetting("HTTP_BATCH_ERROR_INDEX_FIELD", "index",
               "the field of a listed error that gives the record's position in the request"),
    EnvSetting("HTTP_BATCH_ERROR_INDEX_BASE", "0", "the position of the first record: 0 or 1"),
    EnvSetting("HTTP_BATCH_ERROR_MESSAGE_FIELD", "message",
               "the field of a listed error that says why"),
    EnvSetting("HTTP_BATCH_TIMEOUT", f"{Limits.timeout_seconds:g}", "read timeout of "
               "one POST, in seconds; a timed-out batch is posted again under the same key"),
)  # fmt: skip

TARGET = Target(
    name=NAME,
    title="A generic HTTP batch receiver",
    limits=Limits.from_settings,
    client=HttpBatchClient.from_settings,
    sink=HttpBatchSink(),
    # A record is free-form: every CSV header column becomes a field of the same name.
    csv=CsvColumns(fields=(), other_columns=""),
    params=PARAMS,
    settings=SETTINGS,
)

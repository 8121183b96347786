"""ASOL DataService SourcingData v2: limits.py, client.py, sink.py."""

from importq.settings_table import EnvSetting
from workers.targets.base import CsvColumns, Param, Target
from workers.targets.sourcing_data.client import TARGET as NAME
from workers.targets.sourcing_data.client import SourcingDataClient
from workers.targets.sourcing_data.limits import SourcingDataLimits
from workers.targets.sourcing_data.sink import SourcingDataSink

SETTINGS = (
    EnvSetting("SOURCING_DATA_URL", "", "base URL up to and including `/api/asol/ds`"),
    EnvSetting("SOURCING_DATA_TOKEN", "", "bearer token", secret=True),
    EnvSetting("SOURCING_DATA_AGENT_ID", "", "`agentId` of every request"),
    EnvSetting("SOURCING_DATA_CLIENT_ID", "", "optional `clientId`"),
    EnvSetting(
        "SOURCING_DATA_RECORDS_PER_REQUEST",
        "500",
        "vendor limit: 1 to 500; higher is clamped",
    ),
    EnvSetting(
        "SOURCING_DATA_RECORDS_PER_ITEM",
        "4000",
        "vendor limit: 1 to 4000; higher is clamped",
    ),
    EnvSetting("SOURCING_DATA_BYTES_PER_ITEM", "3000000", "byte budget of one queue item's JSON"),
    EnvSetting(
        "SOURCING_DATA_ITEMS_IN_FLIGHT",
        "8",
        "queue items open at once per --operation-id, across all workers",
    ),
    EnvSetting(
        "SOURCING_DATA_POLL_BUDGET",
        "600",
        "seconds to poll an asynchronous item before rescheduling the poll",
    ),
    EnvSetting("SOURCING_DATA_POLL_INTERVAL", "0.25", "first poll interval (grows to 5 s)"),
    EnvSetting("SOURCING_DATA_TIMEOUT", "60", "read timeout of one request"),
    EnvSetting(
        "SOURCING_DATA_RESEND_ATTEMPTS",
        "6",
        "tries of one request on a 429/502/503 or a lost read before the unit is rescheduled",
    ),
)

TARGET = Target(
    name=NAME,
    title="ASOL DataService SourcingData v2",
    limits=SourcingDataLimits.from_settings,
    client=SourcingDataClient.from_settings,
    sink=SourcingDataSink(),
    csv=CsvColumns(
        fields=("entityId", "recordId", "entityMappingId", "referenceId", "mandantCode"),
        booleans=("isDeleted",),
        prefixes=("data", "customData"),
        required=("entityId", "recordId"),
    ),
    params=(Param("operation_id", "text", "the queue items' operationId (also --operation-id)"),),
    settings=SETTINGS,
)

"""Explorance Blue over SOAP (zeep): limits.py, client.py, sink.py and the bundled blue.wsdl."""

from importq.settings import Settings
from importq.settings_table import EnvSetting
from workers.targets.base import CsvColumns, Target
from workers.targets.blue.client import BlueClient
from workers.targets.blue.limits import BlueLimits
from workers.targets.blue.refusals import TARGET as NAME
from workers.targets.blue.sink import BlueSink


def connect(settings: Settings) -> BlueClient:
    return BlueClient.from_settings(settings, BlueLimits.from_settings(settings))


SETTINGS = (
    EnvSetting(
        "BLUE_API_KEY",
        "",
        "Blue API key (Connections > API Key); sent only in the `APIKeyHeader` SOAP header",
        secret=True,
    ),
    EnvSetting(
        "BLUE_ENDPOINT_URL",
        "the WSDL's address",
        "`.../BlueWebService.svc` (SOAP 1.2) or `.../BlueWebService.svc/file` (SOAP 1.1); "
        "also names the instance whose one import slot all workers share",
    ),
    EnvSetting(
        "BLUE_WSDL_URL",
        "bundled WSDL",
        "the service's `?wsdl` / `?singleWsdl`; its xsd parts are fetched from the same host only",
    ),
    EnvSetting(
        "BLUE_SOAP_VERSION",
        "1.2 if the WSDL has it",
        "`1.1` or `1.2`: which binding to use",
    ),
    EnvSetting("BLUE_ROWS_PER_PUSH", "1000", "rows per PushObjectDataV2"),
    EnvSetting(
        "BLUE_CONNECT_TIMEOUT / BLUE_TIMEOUT",
        "10 / 120",
        "connect timeout; read timeout of ordinary calls",
    ),
    EnvSetting(
        "BLUE_PREPARE_TIMEOUT",
        "3600",
        "read timeout of prepare and of finalize; keep `IMPORTQ_VISIBILITY_TIMEOUT` above "
        "twice this",
    ),
    EnvSetting("BLUE_IMPORT_GAP", "0", "seconds an instance stays closed after an import"),
    EnvSetting(
        "BLUE_FOREIGN_RETRY / BLUE_BUSY_RETRY",
        "300 / 30",
        "seconds before looking again when someone else's / another importq unit's import is open",
    ),
    EnvSetting(
        "BLUE_PROGRESS_INTERVAL",
        "30",
        "seconds between reads of Blue's progress while prepare runs",
    ),
)

TARGET = Target(
    name=NAME,
    title="Explorance Blue (SOAP)",
    limits=BlueLimits.from_settings,
    client=connect,
    sink=BlueSink(),
    csv=CsvColumns(fields=(), other_columns=""),  # the datasource's own columns
    # No params: check_params checks Blue's own options (datasource, block...).
    one_process=True,
    splittable=False,  # one unit is one whole publish
    settings=SETTINGS,
)

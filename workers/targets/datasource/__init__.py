"""The mobile-forms Data Source API: limits.py, client.py, xml.py, sink.py."""

from importq.settings_table import EnvSetting
from workers.targets.base import CsvColumns, Param, Target
from workers.targets.datasource.client import TARGET as NAME
from workers.targets.datasource.client import DataSourceClient
from workers.targets.datasource.limits import DataSourceLimits
from workers.targets.datasource.sink import DataSourceSink

SETTINGS = (
    EnvSetting(
        "DATASOURCE_URL",
        "",
        "the Data Source API address, up to and including `/api/v2/datasource`",
    ),
    EnvSetting("DATASOURCE_COMPANY_ID", "", "`CompanyId` of every request"),
    EnvSetting("DATASOURCE_INTEGRATION_KEY", "", "`IntegrationKey` of every request", secret=True),
    EnvSetting("DATASOURCE_FORMAT", "json", "request and answer format: `json` or `xml`"),
    EnvSetting(
        "DATASOURCE_ROWS_PER_REQUEST",
        "10000",
        "Rows in a replace's first request; vendor limit: 1 to 10000, higher is clamped",
    ),
    EnvSetting(
        "DATASOURCE_NEW_ROWS_PER_REQUEST",
        "1500",
        "NewRows per request; vendor limit: 1 to 1500, higher is clamped",
    ),
    EnvSetting(
        "DATASOURCE_DELETED_ROWS_PER_REQUEST",
        "500",
        "DeletedRows per request; vendor limit: 1 to 500, higher is clamped",
    ),
    EnvSetting(
        "DATASOURCE_MAX_ROWS",
        "50000",
        "rows in one publish; vendor limit: 1 to 50000, higher is clamped",
    ),
    EnvSetting("DATASOURCE_TIMEOUT", "60", "read timeout of one request"),
)

TARGET = Target(
    name=NAME,
    title="Mobile-forms Data Source API",
    limits=DataSourceLimits.from_settings,
    client=DataSourceClient.from_settings,
    sink=DataSourceSink(),
    # Columns are the headers ("Code,Name"), or "Vals.Code" as written in the JSON form.
    csv=CsvColumns(fields=(), prefixes=("Vals",), other_columns="Vals"),
    params=(
        Param("mode", "replace|upsert|delete", "replace the rows, add or update, or delete by key"),
        Param("external_id", "text", "the data source's ExternalId (or give id)"),
        Param("id", "GUID", "the data source's Id, instead of external_id"),
        Param("name", "text", "the data source's Name (the vendor overwrites it)"),
        Param("headers", "list", "the columns in order, each :Title/:SubLeft/:Thumb optional"),
    ),
    splittable=False,  # one unit is one whole publish
    settings=SETTINGS,
)

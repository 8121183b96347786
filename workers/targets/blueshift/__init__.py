"""Blueshift trigger customer import: limits.py, client.py, s3.py (CSV staging), sink.py."""

from importq.settings import Settings
from importq.settings_table import EnvSetting
from workers.targets.base import CsvColumns, Param, Target
from workers.targets.blueshift.client import TARGET as NAME
from workers.targets.blueshift.client import BlueshiftClient
from workers.targets.blueshift.limits import BlueshiftLimits
from workers.targets.blueshift.s3 import S3Staging
from workers.targets.blueshift.sink import WHERE_UUID, BlueshiftConnections, BlueshiftSink


def connect(settings: Settings) -> BlueshiftConnections:
    limits = BlueshiftLimits.from_settings(settings)
    api = BlueshiftClient.from_settings(settings, limits.request_timeout_seconds)
    return BlueshiftConnections(api, S3Staging.from_settings(settings, limits))


SETTINGS = (
    EnvSetting(
        "BLUESHIFT_API_KEY",
        "",
        "User API Key, sent as the HTTP Basic username with an empty password",
        secret=True,
    ),
    EnvSetting(
        "BLUESHIFT_URL",
        "`https://api.getblueshift.com`",
        "API base; EU accounts use `https://api.eu.getblueshift.com`",
    ),
    EnvSetting(
        "BLUESHIFT_S3_BUCKET",
        "",
        "bucket where a job's records are staged as CSV; unset: bare triggers only (records "
        "are refused at publish)",
    ),
    EnvSetting(
        "BLUESHIFT_S3_PREFIX",
        "(bucket root)",
        "the import's S3 folder (`--param s3_prefix=` per job); the key is `<prefix>/<job id>.csv`",
    ),
    EnvSetting(
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN",
        "",
        "S3 credentials, read by boto3 itself (or its usual chain: a profile, an instance role)",
        secret=True,
    ),
    EnvSetting("AWS_REGION / AWS_PROFILE", "", "boto3's region and profile"),
    EnvSetting("AWS_ENDPOINT_URL", "", "another S3 endpoint (moto in the tests, MinIO...)"),
    EnvSetting(
        "BLUESHIFT_MAX_IMPORT_BYTES",
        "50000000",
        "largest job (compact JSON of its records); larger input is refused at publish",
    ),
    EnvSetting(
        "BLUESHIFT_405_ATTEMPTS / BLUESHIFT_405_RETRY_SECONDS",
        "3 / 180",
        "405 answers tolerated, and the wait after each",
    ),
    EnvSetting("BLUESHIFT_500_ATTEMPTS", "3", "500 answers before a trigger fails for good"),
    EnvSetting("BLUESHIFT_TIMEOUT", "30", "read timeout of the trigger request"),
    EnvSetting(
        "BLUESHIFT_S3_MULTIPART_THRESHOLD / BLUESHIFT_S3_MULTIPART_CHUNKSIZE",
        "8388608",
        "CSV size from which the upload goes in parts, and the part size (at least 5242880, "
        "S3's smallest part)",
    ),
)

TARGET = Target(
    name=NAME,
    title="Blueshift customer import",
    limits=BlueshiftLimits.from_settings,
    client=connect,
    sink=BlueshiftSink(),
    # CSV columns are the attributes; a line break in one is far likelier a stray quote.
    csv=CsvColumns(fields=(), other_columns="", line_breaks=False),
    params=(
        Param("uuid", "uuid", f"the customer import to trigger ({WHERE_UUID})"),
        Param("columns", "list of names", "the CSV's columns in order, e.g. email,first_name"),
        Param("s3_prefix", "text", "the S3 folder of this job's CSV (default BLUESHIFT_S3_PREFIX)"),
    ),
    records_optional=True,  # a bare trigger: the import's S3 files are written elsewhere
    splittable=False,  # one unit is one whole publish
    settings=SETTINGS,
)

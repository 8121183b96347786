"""Stage a job's records as one CSV object in the S3 location a Blueshift import reads.

The CSV is rendered row by row while boto3 reads it (multipart above a
threshold), so no copy of the whole file is ever built in memory. Its key is
the job id, so a unit that runs again overwrites its own file: a redo is
idempotent.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from importq.errors import (
    AuthError,
    FinalError,
    NotFoundError,
    RetryableError,
    TargetError,
    VendorAnswer,
)
from importq.settings import Settings
from workers.targets.base import Record
from workers.targets.blueshift.client import TARGET
from workers.targets.blueshift.limits import BlueshiftLimits

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from mypy_boto3_s3 import S3Client

ROWS_PER_CHUNK = 500  # rows rendered per step: small strings, few calls


def columns_of(records: Iterable[Record]) -> list[str]:
    """The union of the records' keys, in first-seen order: the CSV header."""
    return list(dict.fromkeys(chain.from_iterable(records)))


def cell(value: Any) -> str:
    """A JSON scalar as a CSV cell: strings as they are, null empty, the rest as JSON writes it."""
    # Spelled out rather than json.dumps, which costs more than the whole row's CSV.
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)  # int and float: the same digits json.dumps writes


def csv_chunks(records: Iterable[Record], columns: Sequence[str]) -> Iterator[bytes]:
    """The header, then the rows, as UTF-8 CSV in chunks of ROWS_PER_CHUNK rows."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    for number, record in enumerate(records, start=1):
        writer.writerow([cell(record.get(column)) for column in columns])
        if number % ROWS_PER_CHUNK == 0:
            yield text.getvalue().encode()
            text.seek(0)
            text.truncate()
    yield text.getvalue().encode()


class CsvReader(io.RawIOBase):
    """A read-only binary file whose bytes are the CSV of `records`, rendered as they are read."""

    def __init__(self, records: Iterable[Record], columns: Sequence[str]) -> None:
        super().__init__()
        self._chunks = csv_chunks(records, columns)
        self._pending = bytearray()
        self.size = 0  # bytes handed out so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        while len(self._pending) < len(view):
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._pending += chunk
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        del self._pending[:count]
        self.size += count
        return count


class S3Staging:
    """Writes CSV objects under one bucket; credentials come from boto3's usual chain."""

    def __init__(self, bucket: str, prefix: str, s3: S3Client, transfer: TransferConfig) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._s3 = s3
        self._transfer = transfer

    @classmethod
    def from_settings(cls, settings: Settings, limits: BlueshiftLimits) -> S3Staging | None:
        """None when BLUESHIFT_S3_BUCKET is unset: the worker then only sends bare triggers."""
        bucket = settings.get("BLUESHIFT_S3_BUCKET")
        if not bucket:
            return None
        region = settings.get("AWS_REGION") or settings.get("AWS_DEFAULT_REGION") or None
        s3 = boto3.session.Session().client(
            "s3", endpoint_url=settings.get("AWS_ENDPOINT_URL") or None, region_name=region
        )
        transfer = TransferConfig(
            multipart_threshold=limits.multipart_threshold_bytes,
            multipart_chunksize=limits.multipart_chunk_bytes,
        )
        return cls(bucket, settings.get("BLUESHIFT_S3_PREFIX"), s3, transfer)

    def key_for(self, job_id: str, prefix: str | None = None) -> str:
        """The object key of a job's CSV: `<prefix>/<job id>.csv`, one per job."""
        folder = (self.prefix if prefix is None else prefix).strip("/")
        return f"{folder}/{job_id}.csv" if folder else f"{job_id}.csv"

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def upload(self, key: str, records: Sequence[Record], columns: Sequence[str]) -> int:
        """Write the records as CSV to `key` (replacing it); returns the bytes written."""
        body = CsvReader(records, columns)
        try:
            self._s3.upload_fileobj(
                io.BufferedReader(body),
                self.bucket,
                key,
                ExtraArgs={"ContentType": "text/csv"},
                Config=self._transfer,
            )
        except (ClientError, BotoCoreError) as error:
            raise staging_error(error, self.uri(key)) from None
        return body.size


def staging_error(error: ClientError | BotoCoreError, uri: str) -> TargetError:
    """An S3 failure as importq's error: credentials and missing buckets are final."""
    if isinstance(error, NoCredentialsError):
        return AuthError(
            f"no AWS credentials to write {uri}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or a profile or role) on the worker",
            target=TARGET,
        )
    if not isinstance(error, ClientError):  # connection failures and timeouts
        return RetryableError(f"writing {uri} failed: {error}", target=TARGET)
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    code = error.response.get("Error", {}).get("Code", "")
    message = f"S3 refused to write {uri}: {error}"
    answer = VendorAnswer(status=status or None, code=code or None, said=str(error))
    kw: dict[str, Any] = {"target": TARGET, "answer": answer}
    if status in (401, 403):
        return AuthError(f"{message} (give the worker's AWS identity s3:PutObject on it)", **kw)
    if code == "NoSuchBucket" or status == 404:
        return NotFoundError(f"{message} (check BLUESHIFT_S3_BUCKET)", **kw)
    if status >= 500 or code in ("SlowDown", "RequestTimeout", "Throttling"):
        return RetryableError(message, **kw)
    return FinalError(message, **kw)

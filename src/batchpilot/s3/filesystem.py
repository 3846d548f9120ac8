"""A pyarrow filesystem on S3-compatible storage (AWS, MinIO, moto, Ceph…)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from batchpilot.s3.location import S3Endpoint

if TYPE_CHECKING:
    import pyarrow.fs

#: seconds to wait for a connection and for one request; short, so a storage outage
#: costs a background thread little and never a run
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
#: attempts of one request inside the SDK (our shipper retries on its own clock too)
SDK_ATTEMPTS = 2


def s3_filesystem(endpoint: S3Endpoint) -> pyarrow.fs.S3FileSystem:
    """An S3 filesystem for ``endpoint``; credentials come from the AWS SDK's usual
    chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, instance roles).

    Building it does not connect; errors surface as :class:`OSError` on use.
    """
    import pyarrow.fs  # here: ``import batchpilot`` must not start the AWS SDK

    options: dict[str, object] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "request_timeout": REQUEST_TIMEOUT_S,
        "retry_strategy": pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=SDK_ATTEMPTS),
        # one PutObject for a small object instead of a three-request multipart upload
        "allow_delayed_open": True,
    }
    if endpoint.region:
        options["region"] = endpoint.region
    if endpoint.url:
        parts = urlsplit(endpoint.url)
        options["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        options["scheme"] = parts.scheme
    return pyarrow.fs.S3FileSystem(**options)

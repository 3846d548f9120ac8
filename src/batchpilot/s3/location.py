"""Where objects live on S3-compatible storage: an ``s3://bucket/prefix`` URL and the
endpoint and region the usual AWS variables name. Pure values: nothing here connects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from batchpilot.errors import S3UrlError
from batchpilot.url_secrets import mask_url

#: the variables an endpoint is read from, the service-specific one first (as the AWS SDKs do)
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")


@dataclass(frozen=True)
class S3Url:
    """A bucket and a key prefix (no leading or trailing ``/``; may be empty)."""

    bucket: str
    prefix: str = ""

    def key(self, *parts: str) -> str:
        """The path ``bucket/prefix/part/…`` a pyarrow filesystem reads and writes."""
        return "/".join(p for p in (self.bucket, self.prefix, *parts) if p)

    def __str__(self) -> str:
        return f"s3://{self.key()}"


def parse_s3_url(text: str, *, variable: str) -> S3Url:
    """The bucket and prefix of ``s3://bucket[/prefix]``.

    Raises :class:`S3UrlError` naming ``variable`` (where the value came from)
    for another scheme, a missing bucket, credentials inside the URL (they
    belong in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; the error masks them),
    or a query or fragment.
    """
    shown = mask_url(text)
    parts = urlsplit(text.strip())
    if parts.scheme != "s3":
        raise S3UrlError(variable, shown, "must start with s3://, e.g. s3://my-bucket/batchpilot")
    if "@" in parts.netloc:
        raise S3UrlError(
            variable,
            shown,
            "must not hold credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead",
        )
    if not parts.netloc:
        raise S3UrlError(variable, shown, "names no bucket, e.g. s3://my-bucket/batchpilot")
    if parts.query or parts.fragment:
        raise S3UrlError(variable, shown, "takes no query or fragment")
    return S3Url(bucket=parts.netloc, prefix=parts.path.strip("/"))


@dataclass(frozen=True)
class S3Endpoint:
    """The S3 API to talk to: ``url`` (None: AWS itself) and ``region``.

    Credentials are not kept here: the AWS SDK inside pyarrow reads them from
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or a profile, or an instance
    role) when it connects, so no secret ever sits in a settings object.
    """

    url: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Endpoint:
        """Read AWS_ENDPOINT_URL_S3 (else AWS_ENDPOINT_URL) and AWS_REGION (else
        AWS_DEFAULT_REGION). Raises :class:`S3UrlError` for an endpoint that is not
        an http(s) URL."""
        url = next((env[v].strip() for v in ENDPOINT_VARIABLES if env.get(v, "").strip()), None)
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                variable = next(v for v in ENDPOINT_VARIABLES if env.get(v, "").strip())
                raise S3UrlError(
                    variable, mask_url(url), "must be an http:// or https:// URL with a host"
                )
        region = next((env[v].strip() for v in REGION_VARIABLES if env.get(v, "").strip()), None)
        return cls(url=url, region=region)

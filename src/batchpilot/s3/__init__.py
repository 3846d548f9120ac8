"""S3-compatible storage: URLs, endpoints read from the AWS variables, and a pyarrow
filesystem over them (for logs shipped off the machine and for artifacts)."""

from batchpilot.s3.filesystem import s3_filesystem
from batchpilot.s3.location import S3Endpoint, S3Url, parse_s3_url

__all__ = ["S3Endpoint", "S3Url", "parse_s3_url", "s3_filesystem"]

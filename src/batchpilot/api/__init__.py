"""The REST API of ``batchpilot serve``: FastAPI under ``/api/v1``, bearer tokens with
scopes, errors as RFC 9457 problem details, server-sent events.

:func:`create_app` builds the app over a :class:`~batchpilot.scheduler.components.ServeContext`;
:class:`ApiServer` runs it as one of ``serve``'s components.
"""

from batchpilot.api.app import API_PREFIX, OPENAPI_URL, create_app
from batchpilot.api.server import DEFAULT_HOST, DEFAULT_PORT, ApiServer

__all__ = ["API_PREFIX", "DEFAULT_HOST", "DEFAULT_PORT", "OPENAPI_URL", "ApiServer", "create_app"]

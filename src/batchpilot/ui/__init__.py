"""The web dashboard: server-rendered pages over the engine's services and the store.

::

    from batchpilot.ui import DashboardContext, mount_dashboard

    mount_dashboard(app, DashboardContext(store=store, service=service, ...))

:func:`dashboard_router` gives the pages as a FastAPI ``APIRouter`` (mounted at
``/``), :func:`dashboard_static` the packaged CSS and script (mounted at
``/ui/static``); :func:`mount_dashboard` does both.
"""

from batchpilot.ui.context import DashboardContext, DashboardSettings, OpenAlert
from batchpilot.ui.router import STATIC_PATH, dashboard_router, dashboard_static, mount_dashboard

__all__ = [
    "STATIC_PATH",
    "DashboardContext",
    "DashboardSettings",
    "OpenAlert",
    "dashboard_router",
    "dashboard_static",
    "mount_dashboard",
]

"""The API's routes for CSV exports and the local archive (tickets)."""
from __future__ import annotations

from werkzeug.wrappers import Response

from common.contracts import tickets as helpdesk
from services.gateway.http import ADMIN, STAFF, route
from services.gateway.responses import json_response


ARCHIVE_TIMEOUT_SECONDS = 600.0


class ReportRoutes:
    """Exports and archives."""

    # reports and archives ----------------------------------------------------------------

    @route("POST", "/api/reports/exports",
           summary="Ask for a CSV export of tickets: made at once; poll its status_url after "
                   "Retry-After seconds", tag="reports", roles=STAFF, body=helpdesk.ExportRequest,
           response=helpdesk.ExportRun, status=202, raw=True)
    def request_export(self, principal, body, request=None):
        export = self._export_links(self.call("tickets", "request_export", principal, body))
        if request is None:  # the console's call (Service.operation): the view alone
            return export
        headers = {"Location": export["status_url"]}
        if export["poll_after_seconds"] is not None:
            headers["Retry-After"] = str(export["poll_after_seconds"])
        return json_response(202, export, headers)

    @route("GET", "/api/reports/exports", summary="The tenant's recent exports, newest first",
           tag="reports", roles=STAFF, query=helpdesk.ExportQuery, response=helpdesk.ExportList)
    def list_exports(self, principal, query):
        listed = self.call("tickets", "list_exports", principal, query)
        return {**listed, "items": [self._export_links(export) for export in listed["items"]]}

    @route("GET", "/api/reports/exports/<export_id>", summary="An export's status", tag="reports",
           roles=STAFF, response=helpdesk.ExportRun)
    def get_export(self, principal, export_id):
        return self._export_links(self.call("tickets", "get_export", principal, export_id))

    @staticmethod
    def _export_links(export: dict) -> dict:
        """Where to follow an export and fetch its file (the API's paths are the gateway's)."""
        status_url = f"/api/reports/exports/{export['id']}"
        return {**export, "status_url": status_url, "download_url": f"{status_url}/download"}

    @route("GET", "/api/reports/exports/<export_id>/download", summary="The export's CSV",
           tag="reports", roles=STAFF, raw=True)
    def download_export(self, principal, request, export_id):
        export = self.call("tickets", "download_export", principal, export_id)
        return Response(export["content"], status=200, content_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{export["filename"]}"'})

    @route("POST", "/api/admin/tickets/archive-local",
           summary="Write resolved tickets older than N days to ARCHIVE_DIR (JSON lines), once",
           tag="reports", roles=ADMIN, body=helpdesk.ArchiveRequest, response=helpdesk.ArchiveResult)
    def archive_local(self, principal, body):
        return self.call("tickets", "archive_resolved", principal, body, timeout=ARCHIVE_TIMEOUT_SECONDS)

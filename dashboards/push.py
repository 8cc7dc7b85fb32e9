"""Uploads the dashboards to a Grafana over its HTTP API (grafana-client): into one folder,
overwriting earlier versions by uid, so pushing twice gives the same result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

FOLDER_TITLE = "callwatch"


class PushError(Exception):
    """Grafana could not be reached or refused an upload; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Pushed:
    uid: str
    title: str
    url: str  # the dashboard's path on the Grafana, as Grafana reports it
    version: int | None


def push(url: str, token: str, dashboards: Mapping[str, Mapping[str, Any]], *, folder_uid: str = "callwatch",
         connect: Callable[..., GrafanaApi] = GrafanaApi.from_url) -> list[Pushed]:
    api = connect(url, credential=token)
    try:
        _ensure_folder(api, folder_uid)
        pushed = []
        for uid, board in dashboards.items():
            answer = api.dashboard.update_dashboard({
                "dashboard": {**board, "id": None}, "folderUid": folder_uid, "overwrite": True,
                "message": "callwatch dashboards push"})
            pushed.append(Pushed(uid, str(board.get("title", uid)), str(answer.get("url", "")), answer.get("version")))
        return pushed
    except GrafanaException as error:
        raise PushError(f"Grafana at {url} answered: {_reason(error)}") from None
    except OSError as error:  # connection refused, DNS, TLS (niquests errors are OSErrors)
        raise PushError(f"cannot reach Grafana at {url}: {error}") from None


def _ensure_folder(api: GrafanaApi, folder_uid: str) -> None:
    try:
        api.folder.get_folder(folder_uid)
    except GrafanaClientError as error:
        if error.status_code != 404:
            raise
        api.folder.create_folder(FOLDER_TITLE, uid=folder_uid)


def _reason(error: GrafanaException) -> str:
    status = getattr(error, "status_code", 0)
    message = getattr(error, "message", "") or str(error)
    return f"{status} {message}".strip() if status else message

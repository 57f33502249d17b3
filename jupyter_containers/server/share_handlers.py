"""REST handlers of the sharing operations (server/share_ops.py): each answers 202 with the operation to follow."""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from tornado import web

from .handlers import API, ID, NAME, ContainersHandler


class _OperationHandler(ContainersHandler):
    def started(self, op: dict[str, Any]) -> None:
        self.set_status(202)
        self.set_header("Location", f"{self.base_url.rstrip('/')}{API}/operations/{op['id']}")
        self.finish(json.dumps(op))


class ExportHandler(_OperationHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        body = self.body({"path", "with_image"})
        self.started(await self.call(self.service.share.export, name, body))


class PushHandler(_OperationHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        body = self.body({"registry"})
        self.started(await self.call(self.service.share.push, name, body))


class PullHandler(_OperationHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        body = self.body({"registry"})
        self.started(await self.call(self.service.share.pull, name, body))


class BinderHandler(_OperationHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        body = self.body({"path", "repo", "force"})
        self.started(await self.call(self.service.share.binder, name, body))


class ImportHandler(_OperationHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.body({"path", "into", "force"})
        self.started(await self.call(self.service.share.import_bundle, body))


class ReproduceHandler(_OperationHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.body({"path", "sanitize", "rtol", "atol", "report"})
        self.started(await self.call(self.service.share.reproduce, body))


class OperationsHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.finish(json.dumps({"operations": self.service.share.all()}))


class OperationHandler(ContainersHandler):
    @web.authenticated
    @authorized
    async def get(self, op_id: str) -> None:
        self.finish(json.dumps(await self.call(self.service.share.get, op_id)))


def share_handlers() -> list[tuple[str, type]]:
    return [
        (rf"{API}/environments/{NAME}/export", ExportHandler),
        (rf"{API}/environments/{NAME}/push", PushHandler),
        (rf"{API}/environments/{NAME}/pull", PullHandler),
        (rf"{API}/environments/{NAME}/binder", BinderHandler),
        (rf"{API}/bundles/import", ImportHandler),
        (rf"{API}/notebooks/reproduce", ReproduceHandler),
        (rf"{API}/operations", OperationsHandler),
        (rf"{API}/operations/{ID.format('op_id')}", OperationHandler),
    ]

"""The live tail's websocket, `ws/tail/<slug>/`: a tenant's calls as they are stored.

The session (AuthMiddlewareStack) says who connects; the usage page's permission, or being
the operator, lets them in; anyone else is closed with 4403 (accepted first, so the browser
sees the code and stops reconnecting). Client -> server: {"type": "filters", ...} (see
observability.tail.parse_filters), answered with the filters as understood. Server ->
client: {"type": "call", "call": {...}} for each stored call that passes them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from observability import tail
from portal import access

log = logging.getLogger(__name__)

FORBIDDEN = 4403
PERMISSION = "usage.view"  # the usage page's


def tenant_id_for_watcher(user, slug: str) -> int | None:
    """The tenant whose calls `user` may watch, or None."""
    if user is None or not user.is_authenticated:
        return None
    try:
        tenant = access.access_tenant_by_slug(user, slug)
    except Http404:
        return None
    return tenant.pk if access.can(user, tenant, PERMISSION) else None


class TailConsumer(AsyncJsonWebsocketConsumer):
    tenant_id: int | None = None
    filters = tail.Filters()
    keeper: asyncio.Task | None = None

    async def connect(self) -> None:
        self.slug = self.scope["url_route"]["kwargs"]["slug"]
        await self.accept()
        self.tenant_id = await self._allowed()
        if self.tenant_id is None:
            await self.close(code=FORBIDDEN)
            return
        tail.register_loop(asyncio.get_running_loop())
        await self.channel_layer.group_add(tail.group_name(self.tenant_id), self.channel_name)
        await tail.mark_watched(self.tenant_id)
        self.keeper = asyncio.create_task(self._keep_watching())

    async def disconnect(self, code) -> None:
        if self.keeper is not None:
            self.keeper.cancel()
        if self.tenant_id is not None:
            group = tail.group_name(self.tenant_id)
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        if isinstance(content, dict) and content.get("type") == "filters":
            self.filters = tail.parse_filters(content)
            await self.send_json({"type": "filters", "filters": asdict(self.filters)})

    async def tail_calls(self, event) -> None:
        """A stored batch of this tenant (observability.tail.publish)."""
        for call in event.get("calls", ()):
            if tail.matches(call, self.filters):
                await self.send_json({"type": "call", "call": call})

    async def _allowed(self) -> int | None:
        return await database_sync_to_async(tenant_id_for_watcher)(
            self.scope.get("user"), self.slug
        )

    async def _keep_watching(self) -> None:
        """Keep the watcher's mark alive, and let go of someone who lost the permission."""
        while True:
            await asyncio.sleep(tail.WATCH_TTL / 3)
            try:
                if await self._allowed() != self.tenant_id:
                    await self.close(code=FORBIDDEN)
                    return
                await tail.mark_watched(self.tenant_id)
            except Exception as exc:  # the database or the cache away: try again later
                log.warning("live tail: could not refresh a watcher: %r", exc)

"""The gossip control routes: publish, subscribe (a JSON-lines stream),
and a topic's peers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from guts.control._api import ControlApi, require
from guts.control._http import HttpRequest, HttpResponse, JsonLines
from guts.gossip import GossipMessage, Gossipsub

__all__ = ["add_pubsub_routes", "message_json"]


def message_json(message: GossipMessage) -> dict[str, Any]:
    """A received message as the control API and ``guts start --json`` show it.

    ``data`` is the payload as text when it is UTF-8 (else ``null``);
    ``data_hex`` is always there.
    """
    try:
        text: str | None = message.data.decode()
    except UnicodeDecodeError:
        text = None
    return {
        "event": "message",
        "topic": message.topic,
        "from": str(message.author) if message.author is not None else None,
        "seqno": int.from_bytes(message.seqno, "big") if message.seqno is not None else None,
        "data": text,
        "data_hex": message.data.hex(),
        "message_id": message.message_id.hex(),
        "received_from": str(message.propagation_source) if message.propagation_source is not None else None,
    }


def add_pubsub_routes(api: ControlApi, gossip: Gossipsub) -> None:
    async def publish(request: HttpRequest) -> HttpResponse:
        body = request.json()
        topic = require(body, "topic")
        if "data_hex" in body:
            data = bytes.fromhex(require(body, "data_hex"))
        else:
            data = str(body.get("data", "")).encode()
        message_id = await gossip.publish(topic, data)
        return HttpResponse(
            200,
            {
                "topic": topic,
                "message_id": message_id.hex(),
                "subscribers": len(gossip.subscribers(topic)),
                "mesh": len(gossip.mesh_peers(topic)),
            },
        )

    async def subscribe(request: HttpRequest) -> HttpResponse:
        topic = require(request.query, "topic")
        sub = gossip.subscribe(topic)

        async def lines() -> AsyncIterator[dict[str, Any]]:
            with sub:
                yield {"event": "subscribed", "topic": topic}
                async for message in sub:
                    yield message_json(message)

        return HttpResponse(200, JsonLines(lines()))

    async def peers(request: HttpRequest) -> HttpResponse:
        topic = require(request.query, "topic")
        mesh = set(gossip.mesh_peers(topic))
        subscribers = gossip.subscribers(topic)
        return HttpResponse(
            200,
            {
                "topic": topic,
                "subscribed": topic in gossip.topics,
                "mesh": [str(p) for p in gossip.mesh_peers(topic)],
                "peers": [
                    {"peer_id": str(p), "in_mesh": p in mesh, "score": round(gossip.score(p), 3)}
                    for p in subscribers
                ],
            },
        )

    api.route("POST", "/v1/pubsub/publish", publish)
    api.route("GET", "/v1/pubsub/subscribe", subscribe)
    api.route("GET", "/v1/pubsub/peers", peers)

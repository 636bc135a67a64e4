"""The api bench's baseline: a bare nameko HTTP entrypoint making one RPC to an echo service,
none of the project's code on the way (no auth, no schema, no metrics). Run as two processes,
as the system's gateway and a backend are:

    python -m nameko run bench.echo:EchoService --config FILE
    python -m nameko run bench.echo:EchoGateway --config FILE

FILE: AMQP_URI and WEB_SERVER_ADDRESS (bench/api.py writes it)."""
from __future__ import annotations

import json

from nameko.rpc import RpcProxy, rpc
from nameko.web.handlers import http


class EchoService:
    name = "bench_echo"

    @rpc
    def echo(self, value):
        return value


class EchoGateway:
    name = "bench_echo_gateway"

    echo_rpc = RpcProxy("bench_echo")

    @http("GET", "/echo")
    def echo(self, request):
        value = self.echo_rpc.echo("x")
        return 200, {"Content-Type": "application/json"}, json.dumps({"echo": value})

"""chamados-protocol: what desktop agents and the Chamados server both speak — the heartbeat
and registration schemas (`heartbeat`) and the inventory's canonical form, hash and diff
(`inventory`). The agent distribution and the server both depend on it; it depends on
marshmallow and orjson only, never on either of them."""

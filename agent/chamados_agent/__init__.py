"""chamados-agent: the desktop agent (registration, inventory, heartbeats, spool)."""

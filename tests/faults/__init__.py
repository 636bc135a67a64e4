"""The heartbeat pipeline under faults: a private RabbitMQ node and PostgreSQL cluster, the
devices service as real processes, a confirming publisher, and exact per-machine accounting.
`make test` runs the short subset; `make test-faults` (CHAMADOS_FAULTS=all) runs every case."""

"""Writes chamados.json, the Grafana dashboard (run after editing the panels below):
    .venv/bin/python deploy/grafana/build_dashboard.py
Kept as code so every panel's query is one readable line; tests check each names metrics
the services export."""
import json
from pathlib import Path

GB, MB = 1e9, 1e6


def panel(title, exprs, unit="short", thresholds=None, kind="timeseries", legend="{{job}}"):
    steps = [{"color": "green", "value": None}]
    for value, colour in thresholds or []:
        steps.append({"color": colour, "value": value})
    return {
        "type": kind, "title": title, "datasource": {"type": "prometheus", "uid": "prometheus"},
        "targets": [{"expr": expr, "legendFormat": legend, "refId": chr(65 + i)}
                    for i, expr in enumerate(exprs)],
        "fieldConfig": {"defaults": {
            "unit": unit, "thresholds": {"mode": "absolute", "steps": steps},
            "custom": {"thresholdsStyle": {"mode": "line" if thresholds else "off"}}}, "overrides": []},
    }


PANELS = [
    panel("Memory per service (1 GB warning, 5 GB critical)",
          ["process_resident_memory_bytes"], "bytes", [(GB, "orange"), (5 * GB, "red")],
          legend="{{job}} {{instance}}"),
    panel("Database size (50 MB warning, 200 MB critical)",
          ["max(chamados_database_size_bytes)"], "bytes", [(50 * MB, "orange"), (200 * MB, "red")],
          legend="database"),
    panel("Largest tables", ["topk(10, max by (service, table) (chamados_table_size_bytes))"], "bytes",
          legend="{{service}}.{{table}}"),
    panel("Heartbeats per second", ["sum by (outcome) (rate(chamados_heartbeats_total[5m]))"], "ops",
          legend="{{outcome}}"),
    panel("Inventory write ratio (versions written per accepted heartbeat)",
          ['sum(rate(chamados_inventory_versions_total{result="written"}[1h])) / '
           'sum(rate(chamados_heartbeats_total{outcome="accepted"}[1h]))'], "percentunit",
          [(0.05, "red")], legend="written / accepted"),
    panel("Lag: heartbeat queue and outbox backlog",
          ['max(chamados_queue_messages{queue="devices.heartbeats"})',
           "sum by (service) (chamados_outbox_backlog)"], legend="{{service}}"),
    panel("Dead letters", ['max(chamados_queue_messages{queue="chamados.dead-letter"})',
                           "sum by (queue) (rate(chamados_messages_dead_lettered_total[5m]))"],
          legend="{{queue}}"),
    panel("Job runs (last hour)", ["sum by (job, outcome) (increase(chamados_job_runs_total[1h]))"],
          legend="{{job}} {{outcome}}"),
    panel("Since each job last succeeded",
          ["time() - max by (job) (chamados_job_last_success_timestamp_seconds)"], "s",
          legend="{{job}}"),
    panel("Tickets by status", ["max by (status) (chamados_tickets)"], kind="bargauge",
          legend="{{status}}"),
    panel("Gateway p95 latency",
          ["histogram_quantile(0.95, sum by (le, route) (rate(chamados_http_request_duration_seconds_bucket[5m])))"],
          "s", legend="{{route}}"),
    panel("Gateway 5xx per second", ['sum(rate(chamados_http_requests_total{status=~"5.."}[5m]))'], "ops",
          legend="5xx"),
]

for index, item in enumerate(PANELS):
    item["id"] = index + 1
    item["gridPos"] = {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)}

DASHBOARD = {
    "uid": "chamados", "title": "Chamados", "schemaVersion": 39, "version": 1, "editable": True,
    "time": {"from": "now-6h", "to": "now"}, "refresh": "30s", "tags": ["chamados"],
    "panels": PANELS,
}

if __name__ == "__main__":
    target = Path(__file__).parent / "dashboards" / "chamados.json"
    target.write_text(json.dumps(DASHBOARD, indent=2) + "\n")
    print(f"wrote {target}")

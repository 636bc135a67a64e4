"""Heartbeat benchmarks: each compares figures measured side by side in ONE run (a baseline
measured in the same run, 3 repetitions, the median), on its own RabbitMQ vhost and its own
PostgreSQL database, with the services started as processes by tests/harness.py's System.

    python -m bench                 # every bench at full size, results in bench/results/
    python -m bench drain http      # only these
    python -m bench --smoke         # every bench at tiny sizes, results in a temporary folder
    python -m bench --help

Each bench writes `<out>/<bench>.json` shaped
`{"bench", "commit", "params", "targets": [{"name", "goal", "measured", "unit", "met"}], ...}`
and `<out>/<bench>.png`. `met` is true/false against the goal, or null for a figure the issue
asks to report without a goal. A bench that stalls or crashes reports it (`"failure"` or
`"error"`) instead of hanging: every wait has a deadline.
"""

BENCHES = ("drain", "http", "replicas", "memory", "growth", "console", "api", "software")

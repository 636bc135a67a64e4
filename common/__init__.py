"""What every Chamados process shares. Importing it does nothing by itself: each process
calls `common.bootstrap.install()` first (the library patches and version checks)."""

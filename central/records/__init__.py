"""What central keeps for the record: the tamper-evident ledger (``ledger``), evidence snapshots
(``evidence``), the time-series sink (``timeseries``) and backups (``backup``)."""

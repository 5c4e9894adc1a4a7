"""Data parallelism: the batch is split over every device; tables and dense
parameters are replicated.

Use: ``--config.sharding=data_parallel`` (the default). Everything here is the default of
`jaxctr.parallel` (one ``data`` axis over all devices, ``batch`` and ``table_shard`` on it).
"""

STRATEGY = "data_parallel"

"""Table-row-wise sharding: tables are packed onto groups of devices (one group
per host in a multi-host run) and each table's rows are split over its group's
devices, so row traffic mostly stays within a host; the batch and the dense
network are data parallel over every device.

Use: ``--config.sharding=table_row_wise``. The "local" axis is the group; with
one process of 8 devices this gives 2 groups of 4.
"""

MESH_AXES = (("group", -1), ("local", 4))

RULES = (
  ("batch", ("group", "local")),
  ("table_shard", ("group", "local")),
  ("row_group", "local"),  # devices that split one table's rows
)

STRATEGY = "table_row_wise"

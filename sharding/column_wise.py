"""Column-wise sharding: every device holds all rows of a table and a slice
of its embedding dimension; the batch and the dense
network are data parallel.

Use: ``--config.sharding=column_wise``.
"""

MESH_AXES = (("data", -1),)

# Logical axis -> mesh axis. "table_shard" is the axis sharded tables are split
# over; it must cover the same devices as "batch" (every device serves rows and
# trains on its slice of the batch).
RULES = (
  ("batch", "data"),
  ("table_shard", "data"),
  ("vocab", None),
  ("embed", None),
  ("hidden", None),
)

# Default strategy of every table (config.embedding.strategy overrides).
STRATEGY = "column_wise"

"""Table-wise sharding: each table lives whole on one device; tables are packed
largest first onto the least-loaded device; the batch and the dense
network are data parallel.

Use: ``--config.sharding=table_wise``.
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
STRATEGY = "table_wise"

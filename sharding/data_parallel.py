"""Data parallelism: the batch is split over every device; tables and dense
parameters are replicated.

Use: ``--config.sharding=data_parallel`` (the default).
"""

# Mesh axes and their sizes; -1 takes all remaining devices.
MESH_AXES = (("data", -1),)

# Logical axis -> mesh axis (None: replicated). Models and tables name only the
# logical axes on the left.
RULES = (
  ("batch", "data"),
  ("table_shard", "data"),
  ("vocab", None),
  ("embed", None),
  ("hidden", None),
)

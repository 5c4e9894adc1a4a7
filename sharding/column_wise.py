"""Column-wise sharding: every device holds all rows of a table and a slice
of its embedding dimension; the batch and the dense
network are data parallel.

Use: ``--config.sharding=column_wise``.
"""

# Default placement of every table (config.embedding.strategy overrides). Mesh and rules
# are jaxctr.parallel's defaults: one "data" axis, "batch" and "table_shard" on it.
STRATEGY = "column_wise"

"""Table-wise sharding: each table lives whole on one device; tables are packed
largest first onto the least-loaded device; the batch and the dense
network are data parallel.

Use: ``--config.sharding=table_wise``.
"""

# Default placement of every table (config.embedding.strategy overrides). Mesh and rules
# are jaxctr.parallel's defaults: one "data" axis, "batch" and "table_shard" on it.
STRATEGY = "table_wise"

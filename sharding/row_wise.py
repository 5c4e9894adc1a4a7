"""Row-wise sharded tables: every table's rows are split over all devices
(``--config.embedding.row_placement=range|mod``); the batch and the dense
network are data parallel.

Use: ``--config.sharding=row_wise``.
"""

# Default placement of every table (config.embedding.strategy overrides). Mesh and rules
# are jaxctr.parallel's defaults: one "data" axis, "batch" and "table_shard" on it.
STRATEGY = "row_wise"

"""Wide & Deep's hashed cross-product features, end to end."""

import numpy as np
import pytest

from jaxctr import configs, crosses, train
from jaxctr.data import builders, synthetic
from jaxctr.embeddings.specs import FeatureSpec, OptimizerSpec

FEATURES = [
  FeatureSpec("A", "categorical", 5),
  FeatureSpec("B", "categorical", 7),
  FeatureSpec("x", "numeric"),
]


def test_cross_ids_are_stable_in_range_and_pair_specific():
  c = crosses.Crosses([("A", "B"), ("B", "A")], 1000, FEATURES, seed=3)
  batch = {"cat": np.array([[1, 2], [1, 2], [2, 1], [4, 6]])}
  ids = c.ids(batch)
  assert ids.shape == (4, 2) and ids.min() >= 0 and ids.max() < 1000
  assert ids[0, 0] == ids[1, 0]  # same ids, same bucket
  assert ids[0, 0] != ids[2, 0]  # (1, 2) and (2, 1) are different crosses
  np.testing.assert_array_equal(
    ids, crosses.Crosses([("A", "B"), ("B", "A")], 1000, FEATURES, seed=3).ids(batch)
  )
  assert c.feature().max_len == 2 and c.table(OptimizerSpec()).dim == 1


def test_bad_pairs_name_the_config_key():
  with pytest.raises(ValueError, match="cross_pairs: 'x' is not a categorical feature"):
    crosses.Crosses([("A", "x")], 10, FEATURES)
  with pytest.raises(ValueError, match="cross_pairs"):
    crosses.Crosses([("A",)], 10, FEATURES)


def test_wide_crosses_learn_planted_pairs(tmp_path):
  scfg = synthetic.SyntheticConfig(
    num_numeric=2,
    num_categorical=6,
    min_vocab=8,
    max_vocab=16,
    num_pairs=3,
    s_pair=2.0,
    pairwise_only=True,
  )
  ccfg = builders.CtrConfig(
    name="cross_test", sizes=(30_000, 6_000, 6_000), chunk_rows=4096, synthetic=scfg
  )
  ds = builders.load_dataset(
    "synthetic_ctr", str(tmp_path / "tfds"), builder_kwargs={"config": ccfg}
  )
  pairs = tuple((f"C{a + 1}", f"C{b + 1}") for a, b in synthetic.SyntheticGenerator(scfg).pairs)

  def run(cross_pairs):
    c = configs.base_config()
    c.model = "wide_deep"
    c.model_config.hidden = (2,)
    c.model_config.cross_pairs = cross_pairs
    c.model_config.cross_hash_buckets = 4096
    c.embed_dim = 2
    c.batch_size = 512
    c.num_epochs = 4
    c.embedding.learning_rate = 0.05
    c.optimizer.learning_rate = 0.01
    c.checkpoint.enabled = False
    c.progress_bar = False
    c.num_devices = 1
    return train.train_and_evaluate(c, str(tmp_path / str(len(cross_pairs))), dataset=ds)

  with_crosses, without = run(pairs), run(())
  aucs = (with_crosses["test_auc"], without["test_auc"], with_crosses["oracle_auc"])
  # The deep part (one hidden layer of 2) learns some interactions too; crosses add ~0.05.
  assert aucs[0] > aucs[1] + 0.03, aucs
  table = np.asarray(with_crosses["final_state"]["emb"][crosses.CROSS_KEY]["table"])
  assert np.count_nonzero(table) > 0

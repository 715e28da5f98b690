"""Indexing on a local Ray cluster gives the same catalogue as the single-process pipeline."""

import numpy as np
import pytest

from viewfinder import Engine
from viewfinder.config import Config

from conftest import copy_photos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_index_equals_local_index(tmp_path, photos, tiny_spec, ray_local):
    folder = copy_photos(photos, tmp_path / "pics")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    with Engine.open(tmp_path / "local", model=tiny_spec, workers=0, batch_size=4) as local:
        local_rep = local.index(folder, progress=False)
        local_rows = local.store.catalog.images_under(str(folder))
        local_vecs = local.store.catalog.image_vectors([r.id for r in local_rows.values()], local.store.dim)
    with Engine.open(tmp_path / "ray", model=tiny_spec, batch_size=4) as dist:
        rep = dist.index_distributed(folder, actors=2)
        assert rep.embedded == local_rep.embedded and len(rep.failed) == 1
        rows = dist.store.catalog.images_under(str(folder))
        assert {p: r.id for p, r in rows.items()} == {p: r.id for p, r in local_rows.items()}
        vecs = dist.store.catalog.image_vectors([r.id for r in rows.values()], dist.store.dim)
        for i, v in local_vecs.items():
            np.testing.assert_allclose(vecs[i], v, atol=1e-5)
        assert dist.search(str(folder / "chelsea.png"), k=1).hits[0].path.endswith("chelsea.png")
        again = dist.index_distributed(folder, actors=2)  # incremental: nothing left to embed
        assert again.embedded == 0 and again.unchanged == len(rows)


def test_leftover_shard_is_merged_not_recomputed(tmp_path, photos, tiny_spec, ray_local):
    """A shard written by a run that died before merging is merged by the next run."""
    from viewfinder.ingest.distributed import EmbedActor, _write_shard, encoder_factory
    from viewfinder.ingest.pipeline import EmbedOptions
    from viewfinder.ingest.walk import scan

    folder = copy_photos(photos, tmp_path / "pics", ["chelsea.png", "coffee.png", "rocket.jpg"])
    files = scan(folder)[:2]
    actor = EmbedActor(encoder_factory(tiny_spec), "cpu", EmbedOptions(Config.max_pixels, workers=0))
    batch = actor(
        {
            "path": np.array([f.path for f in files]),
            "size": np.array([f.size for f in files]),
            "mtime": np.array([f.mtime for f in files]),
        }
    )
    with Engine.open(tmp_path / "db", model=tiny_spec, batch_size=4) as eng:
        eng.load()  # bind the model
        _write_shard(eng.store.folder / "shards", 0, batch)
        rep = eng.index_distributed(folder, actors=1)
        assert rep.embedded == 3  # 2 from the leftover shard, 1 embedded now
        assert not list((eng.store.folder / "shards").glob("*.npz"))
        assert eng.store.catalog.count_images() == 3

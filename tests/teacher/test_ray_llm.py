"""The Ray transport's engine pool: replicas start together, as a fixed pool of the size asked."""
import pytest

from stylemap import cluster
from stylemap.teacher import ray_llm
from stylemap.teacher.engine import describe_spec
from tests.support.fixtures import make_params

pytest.importorskip("ray.data.llm")


@pytest.mark.parametrize("gpus, replicas, size", [(8, 0, 8), (8, 3, 3), (0, 0, 1)])
def test_engines_start_together_as_a_fixed_pool(monkeypatch, gpus, replicas, size):
    monkeypatch.setattr(cluster, "cluster_gpus", lambda: gpus)
    spec = describe_spec(make_params({"describe.replicas": replicas, "describe.executor": "ray"}).describe, 0)
    config, light = ray_llm.processor_config(spec, gpus)
    # an integer would be Ray 2.60's autoscaling pool from 1 engine (ProcessorConfig.get_concurrency)
    assert config.concurrency == (size, size) and config.get_concurrency() == {"min_size": size, "max_size": size}
    assert light == ({} if gpus else {"num_cpus": cluster.LIGHT_CPUS})
    assert ("kv_cache_memory_bytes" in config.engine_kwargs) == (not gpus)  # the CPU defaults only on CPU

"""How many Ray actors a stage asks for, checked against the cluster's GPUs before Ray would wait forever."""
import pytest

from stylemap import cluster


@pytest.mark.parametrize("gpus, replicas, each, expected", [
    (8, 0, 1, 8),  # one engine per GPU
    (8, 0, 2, 4),  # tensor parallel 2: GPU pairs
    (8, 3, 1, 3),
    (0, 0, 0, 1),  # CPU cluster: one actor unless asked for more
    (0, 2, 0, 2),
])
def test_replica_count(monkeypatch, gpus, replicas, each, expected):
    monkeypatch.setattr(cluster, "cluster_gpus", lambda: gpus)
    assert cluster.replica_count(replicas, each) == expected


def test_more_gpu_replicas_than_the_cluster_holds_is_an_error(monkeypatch):
    monkeypatch.setattr(cluster, "cluster_gpus", lambda: 4)
    with pytest.raises(cluster.ClusterError, match=r"5 replicas x 1 GPU\(s\) each need 5 GPUs; the Ray cluster has 4"):
        cluster.replica_count(5, 1)
    monkeypatch.setattr(cluster, "cluster_gpus", lambda: 0)
    with pytest.raises(cluster.ClusterError, match="need 1 GPUs; the Ray cluster has 0"):
        cluster.replica_count(0, 1)  # embed.num_gpus 1 on a CPU cluster

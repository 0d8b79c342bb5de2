"""How work is cut for a cluster: tasks of bounded size, GPUs, the workers' environment (no Ray needed)."""
from explorer.checkpoints.family import load_family
from explorer.distributed.plan import (
    TASKS_PER_SLOT,
    gpus_to_use,
    plan_groups,
    tensor_sizes,
    worker_env,
)


def test_groups_are_bounded_in_order_and_cover_every_tensor():
    sizes = [10, 10, 50, 10, 10, 5, 5]
    groups = plan_groups(sizes, slots=1, limit=20)
    assert [i for group in groups for i in group] == list(range(len(sizes)))
    for group in groups:
        assert len(group) == 1 or sum(sizes[i] for i in group) <= 20  # a tensor over the limit goes alone
    assert [2] in groups


def test_more_workers_get_more_smaller_tasks(llama_family):
    sizes = tensor_sizes(load_family(llama_family))
    one, two = plan_groups(sizes, slots=1), plan_groups(sizes, slots=2)
    assert len(two) > len(one) >= TASKS_PER_SLOT - 1
    assert max(sum(sizes[i] for i in g) for g in two) < max(sum(sizes[i] for i in g) for g in one)


def test_tasks_take_a_gpu_where_the_cluster_has_them_unless_the_cpu_is_asked_for():
    assert gpus_to_use(8.0, None) == 8 and gpus_to_use(8.0, "cuda") == 8
    assert gpus_to_use(8.0, "cpu") == 0 and gpus_to_use(0.0, None) == 0


def test_workers_get_the_cache_by_absolute_path(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPLORER_CACHE_DIR", "relative-cache")
    monkeypatch.setenv("EXPLORER_DEVICE", "cpu")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert worker_env() == {"EXPLORER_CACHE_DIR": str(tmp_path / "relative-cache"), "EXPLORER_DEVICE": "cpu"}

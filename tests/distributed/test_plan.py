"""How work is cut for a cluster, and that a run without --ray never imports Ray (no Ray needed here)."""
import os
import subprocess
import sys

from explorer.checkpoints.family import load_family
from explorer.distributed.plan import TASKS_PER_SLOT, gpus_to_use, plan_groups, tensor_sizes, worker_env


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


def test_a_plain_run_does_not_import_ray(llama_family, tmp_path):
    code = ("import sys; from explorer.cli import main; "
            f"assert main(['mso', {str(llama_family)!r}, '--a', 'useful', '--b', 'harmful', "
            f"'--out', {str(tmp_path / 'o.csv')!r}]) == 0; print('ray' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "EXPLORER_RAY"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"

import pytest

from harness.core.registry import DuplicateNameError, Registry, UnknownNameError


def test_duplicate_rejected():
    r = Registry("thing")
    r.register("alpha", 1)
    with pytest.raises(DuplicateNameError, match="already registered"):
        r.register("alpha", 2)
    assert r.get("alpha") == 1


def test_unknown_name_suggests_close_matches():
    r = Registry("task")
    for n in ("planted_sst", "esnli", "mnli"):
        r.register(n, n)
    with pytest.raises(UnknownNameError) as e:
        r.get("planted_ss")
    assert "did you mean 'planted_sst'" in str(e.value)
    with pytest.raises(UnknownNameError) as e:
        r.get("zzzz")
    assert "did you mean" not in str(e.value) and "known: esnli, mnli, planted_sst" in str(e.value)


def test_decorator_and_listing():
    r = Registry("metric")

    @r.decorator("b")
    class B:
        pass

    r.register("a", 1)
    assert r.names() == ["a", "b"] and list(r) == ["a", "b"] and "b" in r and len(r) == 2


def test_builtin_registries_have_entries():
    from harness.metrics.base import METRICS
    from harness.core.submission import discover
    from harness.engine.task import TASKS, load_builtin_tasks

    load_builtin_tasks()
    assert {"planted_sst", "planted_sst2"} <= set(TASKS.names())
    assert {"gt_overlap", "mean_rank_pct"} <= set(METRICS.names())
    names = set(discover().names())
    assert {"random", "gradient", "gradient_x_input", "integrated_gradients", "lime", "kernel_shap",
            "leave_one_out"} <= names

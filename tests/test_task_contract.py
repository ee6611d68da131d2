"""The task contract: one loop builds every record, whether a task uses the default
explain-then-score evaluation or runs its own loop; the engine writes nothing onto tasks;
task packages are discovered."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from harness.core.submission import resolve
from harness.engine.runner import RunConfig, run_grid, run_submission
from harness.engine.task import TASKS, Evaluation, ExplainerCallError, Task, get_task
from tasks.planted_sst.task import PlantedSST

from conftest import SMALL_TASK


class OwnLoop(PlantedSST):
    """A task with its own loop: explains the examples in two halves and scores the share of
    attribution mass on the first word (a made-up metric, computed here by hand)."""

    fail_with: BaseException | None = None

    def evaluate(self, run) -> Evaluation:
        if self.fail_with is not None:
            raise self.fail_with
        ex, targets, half = run.examples, run.targets, len(run.examples) // 2
        values = []
        for lo, hi in ((0, half), (half, len(ex))):
            batch = run.bundle.make_batch([e.segments for e in ex[lo:hi]], targets[lo:hi], seed=run.seed)
            attr = run.explainer().explain(run.bundle, batch)
            scores = np.abs(np.asarray(attr.scores, dtype=float))
            for i in range(hi - lo):
                row = scores[i][batch.attention_mask[i].numpy().astype(bool)]
                values.append(float(row[1] / row.sum()) if row.sum() > 0 else 0.0)
        return Evaluation(per_example={"first_token_share": np.array(values)},
                          higher_is_better={"first_token_share": True}, family={"first_token_share": "test"},
                          tables={"halves": [{"half": 0, "n": half}, {"half": 1, "n": len(ex) - half}]},
                          aggregation="mean")


def _own(small_ctx, **attrs):
    task = OwnLoop(**SMALL_TASK)
    task.spec = task.spec.model_copy(update={"main_metric": "first_token_share", "metrics": ("first_token_share",)})
    for k, v in attrs.items():
        setattr(task, k, v)
    return dataclasses.replace(small_ctx, task=task)


def test_a_task_with_its_own_loop_gets_its_record_from_the_same_builder(small_ctx, tmp_path, cache_dir):
    ctx = _own(small_ctx)
    rec = run_submission(resolve("gradient"), ctx, RunConfig(results_dir=tmp_path, cache_dir=cache_dir))
    assert rec.status == "ok", rec.error
    vals = rec.per_example["first_token_share"]
    assert len(vals) == len(ctx.data.examples) and rec.scores["first_token_share"].value == pytest.approx(np.mean(vals))
    assert rec.tables["halves"][1]["n"] == len(ctx.data.examples) - len(ctx.data.examples) // 2
    assert rec.aggregation == "mean" and rec.run_spec.aggregation == "absmax"  # the task's own, the run's
    # measured as a whole: the loop's two explain calls went through the counted model
    assert rec.cost.backward_passes > 0 and rec.cost.pass_check == "not checked" and rec.timing.total_s > 0
    assert rec.run_key == rec.run_spec.key()


@pytest.mark.parametrize("exc, attrs, stage", [
    (RuntimeError("the task's own bug"), {}, "evaluate"),
    (RuntimeError("the attack's own bug"), {"failure_stage": "attack"}, "attack"),
])
def test_a_failing_own_loop_gets_the_task_stage(small_ctx, tmp_path, cache_dir, exc, attrs, stage):
    ctx = _own(small_ctx, fail_with=exc, **attrs)
    rec = run_submission(resolve("random"), ctx, RunConfig(results_dir=tmp_path, cache_dir=cache_dir))
    assert rec.status == "error" and rec.error.stage == stage and str(exc) in rec.error.message
    assert rec.run_spec is not None and rec.run_key == rec.run_spec.key()


def test_an_explainer_failure_inside_a_task_loop_is_the_explainers(small_ctx, tmp_path, cache_dir):
    try:
        raise ExplainerCallError("explain() raised") from ValueError("bad input")
    except ExplainerCallError as e:
        err = e
    rec = run_submission(resolve("random"), _own(small_ctx, fail_with=err),
                         RunConfig(results_dir=tmp_path, cache_dir=cache_dir))
    assert (rec.error.stage, rec.error.type) == ("explain", "ValueError")


def test_the_engine_writes_nothing_onto_a_task(tmp_path, cache_dir):
    task = get_task("planted_sst", **SMALL_TASK)
    before = {k: repr(v) for k, v in vars(task).items()}
    summary = run_grid([task], [resolve("random")], RunConfig(results_dir=tmp_path, cache_dir=cache_dir))
    assert summary.written and not summary.errors
    assert {k: repr(v) for k, v in vars(task).items()} == before


def test_task_packages_are_discovered():
    import tasks

    packages = tasks.load_all()
    assert {"planted_sst", "esnli", "mnli", "fragility", "sanity"} <= set(packages)
    for name in TASKS.names():
        module = TASKS.get(name).__module__
        assert module.split(".")[0] == "tasks" and module.split(".")[1] in packages, (name, module)
    # the default evaluate is explain-then-score; fragility and sanity run their own loops
    assert type(get_task("planted_sst")).evaluate is Task.evaluate
    assert type(get_task("fragility")).evaluate is not Task.evaluate

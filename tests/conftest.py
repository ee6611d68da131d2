import os
from pathlib import Path

import pytest

for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
    os.environ.setdefault(_k, "1")

# The test models are tiny (hidden 16-64): torch's extra intra-op threads buy nothing on them and,
# on a shared 2-core machine, spin-wait for descheduled peers (the conformance suite of all
# submissions: ~14 s single-threaded vs ~170 s with 2 threads under load).
import torch  # noqa: E402

TEST_THREADS = int(os.environ.get("ATTRIBOARD_TEST_THREADS", "1"))
torch.set_num_threads(TEST_THREADS)


@pytest.fixture(autouse=True)
def _torch_threads():
    """Every test starts with the suite's torch threads: a CLI run inside a test sets its own
    (``apply_threads``), and a later test must not depend on which test ran before it on this
    worker (DeepLift's batch invariance on 2 threads differed in the 4th decimal)."""
    if torch.get_num_threads() != TEST_THREADS:
        torch.set_num_threads(TEST_THREADS)
    yield

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_data(sub: str) -> Path:
    p = SHARED_DATA / sub
    if not p.exists():
        pytest.skip(f"real data not available: {p} is absent (it lives beside the repo in ../shared/data)")
    return p


# A small planted task whose reference model trains in seconds: shared by the end-to-end tests.
SMALL_TASK = dict(n_train=1500, n_dev=200, n_eval=24)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("attriboard-cache")


@pytest.fixture(scope="session")
def small_ctx(cache_dir):
    from harness.engine.runner import RunConfig, prepare_task
    from harness.engine.task import get_task

    task = get_task("planted_sst", **SMALL_TASK)
    return prepare_task(task, RunConfig(cache_dir=cache_dir))

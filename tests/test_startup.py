"""Start-up work (issue: throughput): transformers' scikit-learn import is deferred until used,
and a fork server started early serves workers and closes without waiting for its imports."""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_model_classes_import_without_sklearn_and_assisted_generation_still_has_roc_curve():
    code = ("import sys, harness, transformers.models.bert.modeling_bert\n"
            "print('sklearn' in sys.modules)\n"
            "from transformers.generation import candidate_generator as c\n"
            "fpr, tpr, _ = c.roc_curve([0, 1, 1], [0.2, 0.8, 0.6])\n"
            "print('sklearn' in sys.modules, list(tpr))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after = out.stdout.splitlines()
    assert before == "False"                       # importing a model class did not import sklearn
    assert after.startswith("True") and "1.0" in after  # the deferred roc_curve is sklearn's, imported on use


def test_an_unused_warm_fork_server_is_closed_at_once():
    from harness.sandbox import forkserver

    forkserver.shutdown()
    forkserver.warm()
    srv = forkserver.server()
    assert srv.alive() and not srv.used
    t0 = time.monotonic()
    forkserver.shutdown()                          # it is still importing torch: killed, not waited for
    assert time.monotonic() - t0 < 5 and not srv.alive()

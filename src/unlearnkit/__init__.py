"""unlearnkit: make a trained image classifier forget chosen training examples, and audit it.

The public API; the `unlearnkit` command only wraps these functions.
"""

from unlearnkit.config import PRESETS, RunConfig, resolve_config
from unlearnkit.data import Split, load_dataset, make_split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.pipeline import run_demo
from unlearnkit.methods import forget_run, list_methods, register_method
from unlearnkit.models import create_model, list_models, register_model
from unlearnkit.training import Normalizer, Runtime, evaluate, fit, predict_logits
from unlearnkit.training.pipeline import LoadedRun, load_run, train
from unlearnkit.simple import AuditReport, unlearn  # unlearn(model, split, method) or unlearn(model, forget=, retain=)

__version__ = "0.1.0"

__all__ = [
    "PRESETS", "AuditReport", "LoadedRun", "Normalizer", "RunConfig", "Runtime", "Split", "UnlearnkitError", "create_model",
    "evaluate", "fit", "forget_run", "list_methods", "list_models", "load_dataset", "load_run", "make_split",
    "predict_logits", "register_method", "register_model", "resolve_config", "run_demo", "train", "unlearn",
]

# The audit is the subpackage `unlearnkit.audit` (from unlearnkit.audit import audit, compare): it pulls in
# matplotlib and scikit-learn only when used, so `import unlearnkit` stays light. The subpackage itself is
# also callable: `unlearnkit.audit(model, forget=..., retain=..., test=...)` audits an in-memory model
# (unlearnkit.simple.audit), `unlearnkit.audit("runs/x", reference=...)` a run directory.
from unlearnkit import audit  # noqa: E402
from unlearnkit.simple import make_callable as _make_callable  # noqa: E402

_make_callable(audit)
__all__.append("audit")

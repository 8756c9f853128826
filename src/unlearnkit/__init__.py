"""unlearnkit: make a trained image classifier forget chosen training examples, and audit it.

The public API; the `unlearnkit` command only wraps these functions.
"""

from unlearnkit.config import PRESETS, RunConfig, resolve_config
from unlearnkit.data import Split, load_dataset, make_split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.pipeline import run_demo
from unlearnkit.methods import forget_run, list_methods, register_method, unlearn
from unlearnkit.models import create_model, list_models, register_model
from unlearnkit.training import Normalizer, Runtime, evaluate, fit, predict_logits
from unlearnkit.training.pipeline import LoadedRun, load_run, train

__version__ = "0.1.0"

__all__ = [
    "PRESETS", "LoadedRun", "Normalizer", "RunConfig", "Runtime", "Split", "UnlearnkitError", "create_model",
    "evaluate", "fit", "forget_run", "list_methods", "list_models", "load_dataset", "load_run", "make_split",
    "predict_logits", "register_method", "register_model", "resolve_config", "run_demo", "train", "unlearn",
]

# The audit is the subpackage `unlearnkit.audit` (from unlearnkit.audit import audit, compare): it pulls in
# matplotlib and scikit-learn, so `import unlearnkit` does not import it.

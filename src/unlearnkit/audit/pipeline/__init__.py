"""The audit pipeline: run directories in, numbers + report out. Its parts:

* ``audit_run`` -- the audit of one unlearned run (`audit`, `AuditResult`): its models side by side,
  the gaps to retraining, audit.json and the reports;
* ``per_model`` -- one model's numbers (accuracy and every attack), the unit the result cache holds;
* ``comparison`` -- the comparison of many runs: `compare` and the competition's forgetting score
  over groups of runs (`forgetting_score`, `score_arrays`);
* ``caches`` -- the logit cache and the result cache (content-keyed, safe to delete);
* ``loading`` -- opening runs and checking that they belong together; ``common`` -- shared constants.

docs/audit.md defines every metric.
"""

from __future__ import annotations

from .audit_run import AuditResult, audit
from .caches import model_outputs
from .common import AUDIT_FILE, AUDIT_FORMAT, PLOTS_DIR, REPORT_HTML, REPORT_MD
from .comparison import MIN_SCORE_RUNS, compare, forgetting_score, score_arrays

__all__ = ["AuditResult", "audit", "compare", "forgetting_score", "score_arrays", "model_outputs", "AUDIT_FILE",
           "AUDIT_FORMAT", "REPORT_MD", "REPORT_HTML", "PLOTS_DIR", "MIN_SCORE_RUNS"]

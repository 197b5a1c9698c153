"""Self-contained HTML reports with inline SVG charts: training runs and before/after evaluations.

from tether.report import write_training_report
write_training_report(Path("runs/dpo"))  # -> runs/dpo/report.html

Importing this package imports matplotlib (about 0.4 s): import it inside the command that
needs it, not at CLI start-up.
"""

from tether.report.comparison import write_comparison_report
from tether.report.training import write_training_report

__all__ = ["write_comparison_report", "write_training_report"]

"""Safety evaluation: suites, targets, judges, results."""

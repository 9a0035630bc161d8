"""Cross-validation and its report: one fold, results, baseline, checks, methods paragraph, learning curve."""

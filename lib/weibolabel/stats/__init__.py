"""Pure estimators: metrics, calibration, class shares (ACC/PACC/PPI, Wilson), paired tests."""

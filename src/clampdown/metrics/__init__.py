"""Prometheus metrics: live counters and histograms, gauges read from the store at scrape time,
and the per-hour decision tallies behind the collateral signal. See docs/metrics.md.

Every label takes its values from a bounded set (labels.py): the series a scrape returns stay
as many as the playbooks, actions, targets and enum values configured, whatever the alerts and
the gateways send.

This package is imported by the engine (steps.py); keep this module free of imports, so that
importing the engine never pulls in the store collector, the services or the API.
"""

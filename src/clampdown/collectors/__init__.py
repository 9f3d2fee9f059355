"""Collectors: pull alerts and recommendations from the detector, by configured source.

    settings.py     the `sources:` entries of the config file
    client.py       authenticated GETs with retries, and paging by next link
    base.py         what every source type provides; the pull (page fully, ingest, checkpoint)
    defender_alerts.py, graph_alerts.py, defender_assessments.py   one module per type
    runner.py       building collectors, running them in `serve`, one pull, one check
    health.py       last success, lag and last error of each source

Keep this module free of imports: the config module imports `settings` from here.
"""

"""Fakes of the systems Clampdown acts on, at the HTTP level, for tests (yours and ours).

Each fake follows the vendor contract Clampdown is written against: paths, status codes,
error bodies, ETags and throttling. Every fake serves on 127.0.0.1 from a background thread::

    with FakeKong().running() as kong:
        ...  # point a `kong` target at kong.url
"""

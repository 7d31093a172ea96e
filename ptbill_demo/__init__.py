"""Tools, not the library: the demo, the synthetic clinic and the embedded servers.

synth.py     a synthetic PT clinic as FHIR transaction Bundles (ptbill seed, the demo, tests, benchmarks)
embedded.py  a sekmet-fhir server process, an in-process Redis-protocol server, Celery worker processes
demo.py      ``ptbill demo``: the whole product on one machine

The embedded servers need the ``[demo]`` extra (``pip install 'ptbill[demo]'``: sekmet-fhir, fakeredis);
nothing in ``integration/`` or ``tasks/`` imports this package except the CLI's ``seed`` and ``demo``.
"""

"""Real-time feedback, the pure part: CDS Hooks cards, prefetch reading, Subscription notifications.

Plain JSON (dicts) in, frozen dataclasses and plain JSON out; no Celery, HTTP, Redis or settings here
(``tests/pure/test_layering.py``). The I/O around it lives in ``integration.hooks`` (decide an encounter
for a hook, fetch with the EHR's token), ``integration.push`` (Subscriptions on the EMR, resolving
notified resources), ``integration.hook_auth`` (the EHR's JWT) and ``tasks.web`` (the HTTP service).

  cards.py          Decision -> cards (encounter-discharge); ptbill Flags/Tasks -> cards (patient-view)
  prefetch.py       prefetch templates and prefetched data -> (Encounter, related) for extraction
  notifications.py  R4 rest-hook payloads, empty pings, R4B/R5-backport notification Bundles -> targets
  subscriptions.py  the Subscription resources ``ptbill subscribe`` keeps on the EMR
  discovery.py      the ``/cds-services`` document
"""

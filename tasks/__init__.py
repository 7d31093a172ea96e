"""The Celery layer of ptbill: app, configuration (queues, routes, beat) and thin tasks."""

"""ptbill library: FHIR I/O, extraction, the decision seam and the pure domain (no Celery here)."""

__version__ = "0.1.0"
ENGINE_NAME = "ptbill"

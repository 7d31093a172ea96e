"""The billing rule steps, one module per rule; ``integration/billing/engine.py`` runs them in order.

Each module has ``apply(ctx: BillingContext) -> None`` (one has two entry points, see add_ons), names its
rules (``Rule(id, source)``) and the finding/action/flag codes it writes as module constants, and reads its
data through ``ctx.rules`` (typed rows of mappings/, as of the date of service).
"""

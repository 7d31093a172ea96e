"""What ptbill wrote, for a person to read: one encounter (``ptbill show``) or a period (``ptbill report``).

read.py      reads ptbill's resources back from the FHIR server (found by ptbill's encounter tag)
lookup.py    code descriptions and the one fee-schedule lookup (estimated amounts)
model.py     the plain views (frozen dataclasses) the renderers take
summary.py   a period's figures: per code, therapist, payer; findings; open attestations (pure)
text.py      terminal tables;  html.py  a self-contained HTML report with inline SVG charts
csv_lines.py the billing lines as CSV
"""

"""Read models, the projection runner with tracking, and process managers (routing, SLA, campaigns).

May import: domain events, eventstore.
"""

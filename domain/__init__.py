"""Aggregates, their events and commands, and application services (eventsourcing).

May import: eventstore only through eventsourcing's persistence interface. No NATS, web or database code.
"""

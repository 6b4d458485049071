"""Telephony command subscriber, switch drivers and switch-event translation.

May import: domain commands, NATS.
"""

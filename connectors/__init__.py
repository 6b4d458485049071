"""One package per channel (email, facebook, livechat, sms): inbound normalising, outbound sending.

May import: domain commands, NATS.
"""

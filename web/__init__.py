"""The Litestar app: inbox, boards, admin, REST API, webhooks, templates, static assets.

May import: domain commands, projections' read models.
"""

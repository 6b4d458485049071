"""The web pages people sign in to (OP4), as opposed to the API (web.api) that programs
call with keys. Server-rendered (Jinja2, web/templates), in Vietnamese and English
(i18n). May import projections (what a page shows) and web; never NATS directly.
"""

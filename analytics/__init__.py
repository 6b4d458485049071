"""DuckDB warehouse, reports, billing and rating, exports.

May import: projections.
"""

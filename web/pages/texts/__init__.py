"""The pages' strings by area: each module has a `VI` and an `EN` dict with the same keys
(web.pages.i18n merges them; a key defined twice is an error at start-up)."""

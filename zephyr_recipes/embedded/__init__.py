"""The embedded default: a tiny Mistral-architecture model and small datasets in the real schemas.

Nothing here is downloaded. Everything is generated deterministically by this package and written to a
local cache folder the first time a recipe names it (``builtin://tiny-mistral``,
``builtin://tiny-ultrachat``, ``builtin://tiny-ultrafeedback``).
"""

"""The hall page (大厅实时看板): the gateway's own live status page for the hall manager.

``app.create_app`` builds the FastAPI application over a ``HallBoard``; ``server`` runs it
inside the gateway process; ``accounts`` and ``sessions`` are the local login.
"""

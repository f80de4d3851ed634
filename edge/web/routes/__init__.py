"""Routers by resource: pages (hall page, login), board (picture, events), accounts."""

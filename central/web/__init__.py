"""The central dashboard (监察中心看板): login, overview, drill-down, evaluation review,
follow-up board and monthly bulletin, served by central itself. ``central.web.site.install``
registers it on the API app."""

"""Registers the dashboard on central's API app: its JSON routes, pages and static files."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from central.api import anomalies, bulletin, complaints, drilldown, overview, reviews, wall
from central.web import complaint_form, pages

STATIC = Path(__file__).with_name("static")


def install(app: FastAPI) -> None:
    for router in (
        overview.router,
        drilldown.router,
        bulletin.router,
        reviews.router,
        wall.router,
        wall.enroll_router,
        anomalies.router,
        complaints.router,
        complaint_form.router,
        pages.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

"""Complaints (网上投诉): intake, routing to the department (归口办理), deadlines in working days,
replies back to the complainant (网上反馈). See README.md beside this file."""

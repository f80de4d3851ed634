"""Pure rules of central: working-day calendar, time-limit ladder, indicators, 好差评 scale,
bad-review follow-up. See README.md in this package."""

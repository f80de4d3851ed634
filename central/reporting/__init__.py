"""What supervisors read: the indicators within a caller's scope (``scorecard``, over the facts
in ``facts`` and each hall's setup in ``halls``), flagged evaluations and their reviews
(``flagged``, ``reviews``) and the monthly bulletin (``bulletin``)."""

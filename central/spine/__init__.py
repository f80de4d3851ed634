"""The path every gateway event takes into central: the MQTT consumer (``consumer``), each
gateway's rate budget (``admission``), the registry of which gateway speaks for which hall
(``registry``), ingest and its acknowledgements (``ingest``, with ``reading``, ``sequences``,
``quarantine`` and ``outcome``), and the aggregator process that runs them with the jobs after
commit (``aggregator``)."""

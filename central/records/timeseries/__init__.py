"""The time-series sink: hall metrics from stored events to InfluxDB 2.x/3.x (or VictoriaMetrics).

A background job reads the events each gateway has committed since the sink's watermark
(``timeseries_progress``: per gateway, the seq written through; never beyond the gateway's
``committed_through``, so nothing still uncommitted or behind a gap is read), turns them into
points and writes them with influxdb-client's write API; only after the write succeeded does the
watermark move. A restart therefore continues where the last successful write ended. The window
between a successful write and the watermark's commit (a crash exactly there) writes the same
points again with the same timestamps: InfluxDB overwrites a point with the same series and
time, and VictoriaMetrics does the same with ``-dedup.minScrapeInterval=1ms`` (without it the
repeat is kept, so counts over that window would double).

Metric names are ``<measurement>_<field>`` as VictoriaMetrics names them (in InfluxDB: the
measurement and the field). Every value is a float (InfluxDB refuses a field whose type
changes). Tags name places and devices only — hall, gateway, window, service, camera, the key
and its label — never staff numbers, ticket numbers or anything about an applicant; the
``ALLOWED_TAGS`` check refuses any other tag before it can leave the process.

Modules: ``samples`` (what each stored event adds to the metrics; pure) and ``sink`` (reading,
writing and the watermark; the job).
"""

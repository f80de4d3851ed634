"""The ledger (台账防篡改): evaluation and case records, hash-chained per hall per business day.

What is chained, each as one entry:
  evaluation     a row of ``events`` of kind ``evaluator.key``, keyed (gateway, seq)
  case_revision  a row of ``case_revisions``, keyed (case number, revision)
  case           the ``cases`` row and its ``case_suspensions`` as they stood at a revision

Each entry holds the SHA-256 of the record's canonical encoding (``row_hash``) and
``chain_hash = SHA-256(previous chain hash ‖ row_hash)``; a chain starts from a genesis hash of
its hall and day, so an entry cannot be moved to another chain unnoticed. The day is the
business day (Asia/Shanghai) on which central entered the record in the ledger — seconds after
it was stored — so a day's chain is closed for good once that day is over and its head can be
published or signed elsewhere (``ledger head --day``).

The job runs after commit, on what the database returns, never on what the writer had in memory
(PostgreSQL's JSONB re-orders and normalises documents; hashing what is read back is what makes
a later read verify). It only takes rows a row insert cannot smuggle in:
  events       per gateway, seq up to the gateway's ``committed_through`` (watermark in
               ``ledger_progress``); an ``evaluator.key`` row at or below the watermark with no
               entry was put there behind ingest's back, and so is one beyond the committed
               sequence outside a range that arrived early (``pending_ranges``);
  case records by ``received_at`` (watermark, with CASE_SETTLE of slack for transactions that
               commit late); an older revision with no entry, or a case with no revision at all,
               was put there behind the case store's back.

An ``evaluator.key`` row beyond the committed sequence inside a range that arrived early is not
chained yet; it must still be explained by what the gateway itself said: it may not lie beyond
the journal head the gateway reported, by its own clock, after the event's time
(``gateways.state``), and within one boot its monotonic time may not come before the last
event the gateway committed. A row put there behind ingest's back, with a made-up pending
range beside it, fails one or the other once the gateway has spoken since.

What the chain cannot see: whoever can rewrite the table and every later entry can recompute
the chain. The heads make that visible: the job seals every chain's head every few minutes
(``ledger_seals``, and a line in a file outside the database, ``seal_once``), so a rewrite of
today's chain is caught too, not only one of a day whose head was published
(``verify-ledger --heads``).

Modules: ``chain`` (what is hashed and how), ``append`` (the job that chains and seals),
``heads`` (sealing, reading and parsing chain heads), ``verify`` with ``unchained`` (rows the
ledger does not hold) and ``findings`` (what verification reports).
"""

"""Scale-out: one night shared by N worker processes through a PostgreSQL work queue.

`coordinator` plans the night once and finishes the run, `queue` is the table-backed queue
(`FOR UPDATE SKIP LOCKED`), `worker` is one worker process, `commands` the CLI. See
docs/scale-out.md.
"""

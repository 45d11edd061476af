"""Batch jobs: files in, predictions out, scored in committed chunks by an embedded executor
or Celery workers (issue #19).

The pieces, bottom up: :mod:`.model` (a job's record and states), :mod:`.store` (job state in
SQL, with the atomic claims and conditional chunk commits that make every row count once),
:mod:`.files` (the data folder), :mod:`.runner` (one job's chunk loop), :mod:`.embedded`
(threads in the server) and :mod:`.celery` (workers through a broker), :mod:`.manager` (what
the API calls: submit, read, cancel, over either backend).
"""

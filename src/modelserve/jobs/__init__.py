"""Batch scoring: whole files of rows scored chunk by chunk, offline or as jobs (issue #19).

``formats`` reads and writes the file formats (CSV, JSON lines, Parquet) a chunk at a time;
``scoring`` validates a chunk as online requests are validated and scores its valid rows in
one model call. The jobs sit on them, bottom up: ``model`` (a job's record and states),
``store`` (job state in SQL, with the atomic claims and conditional chunk commits that count
every row once), ``files`` (the data folder), ``runner`` (one job's chunk loop), ``manager``
(what the API calls), ``embedded`` (threads in the server) and ``celery_app`` (workers
through a broker).
"""

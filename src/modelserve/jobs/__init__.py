"""Batch scoring: whole files of rows scored chunk by chunk, offline or as jobs.

``formats`` reads and writes the file formats (CSV, JSON lines, Parquet) a chunk at a time;
``scoring`` validates a chunk as online requests are validated and scores its valid rows in
one model call.
"""

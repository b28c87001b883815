"""Manual recovery after an outage: read backup files back and replay them into the database.

``reader`` turns a backup CSV back into values, ``files`` decides which files may be touched and
where a replayed one goes, ``replay`` loads them through the configured sink, ``progress`` draws
the bar and ``report`` renders what happened for the ``collector replay`` and ``collector backups``
commands.
"""

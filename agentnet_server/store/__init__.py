"""The store: the only package that imports peewee. See db.py (connections, writer) and ops/ (transaction scripts)."""

from .db import Database, Tx, open_database

__all__ = ["Database", "Tx", "open_database"]

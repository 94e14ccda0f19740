"""The store: the only package that imports peewee. See db.py (connections, writer) and ops.py."""

from .db import Database, Tx, open_database

__all__ = ["Database", "Tx", "open_database"]

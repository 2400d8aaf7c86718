"""Suspected label errors: how well a score finds wrong labels (``detection``) and the
one ``label_errors.csv`` schema every writer uses (``export``)."""

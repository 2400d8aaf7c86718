"""Suspected label errors: how well a score finds wrong labels (``detection``), the
one ``label_errors.csv`` schema every writer uses (``export``), its review page
(``page``: ``label_errors.html``) and the decisions made on it, applied to a run's
labels (``cleaning``)."""

"""The tasks behind the entry points: ``train``, ``evaluate`` and ``attack``, each a
package whose ``run(cfg)`` takes the composed config and returns its results; the only
package besides the Hydra glue (:mod:`sat.cli`) that reads Hydra configs."""

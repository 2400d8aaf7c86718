"""sat's Hydra sweeper (``hydra/sweeper=sat``, chosen by conf/train.yaml): Hydra's basic
sweeper, with a sweep's method keys applied to the jobs whose method takes them
(:mod:`sat.cli.method_keys`). Hydra instantiates sweepers only from the ``hydra_plugins``
package, hence this module outside ``sat``."""

from __future__ import annotations

from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class SatSweeper(BasicSweeper):
    """:class:`BasicSweeper` whose jobs keep only the method keys their method takes."""

    def split_arguments(self, overrides: list[Any], max_batch_size: int | None) -> list[list[list[str]]]:
        """The basic sweeper's jobs, fitted before the sweep folder is made (a refused
        key leaves nothing behind)."""
        from sat.cli.method_keys import fit_method_keys

        batches = BasicSweeper.split_arguments(overrides, max_batch_size)
        jobs = fit_method_keys([job for batch in batches for job in batch],
                               lambda job: self.hydra_context.config_loader.load_sweep_config(self.config, job))
        return list(self.split_overrides_to_chunks(jobs, max_batch_size)) if max_batch_size else [jobs]

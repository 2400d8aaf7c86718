"""Reading the YAML a run folder holds (Hydra's ``.hydra/*.yaml``, a sweep's
``multirun.yaml``): text from whoever wrote the folder, so it is sized before it is read
and may use no YAML aliases. Hydra never writes an anchor or an alias, and a few hundred
bytes of nested aliases (a "billion laughs") expand to 10**9 values in any reader that
copies the tree (OmegaConf does): ``python -m sat.report`` hung on a 511-byte config.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml

from sat.errors import UserError

MAX_RECORD_BYTES = 16 << 20  # a composed config is a few KB; a sweep's record a few more


def read_record(path: str | Path) -> str:
    """The text of a run folder's YAML record, checked (size, no aliases), or a one-line UserError."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_RECORD_BYTES:
        raise UserError(f"{path} holds {size:,} bytes, more than a record Hydra writes ({MAX_RECORD_BYTES:,}); "
                        "accepted: the .hydra/ record of a run")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        aliased = any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]}); accepted: the record Hydra "
                        "wrote") from None
    if aliased:
        raise UserError(f"{path} uses YAML aliases (*name), which Hydra never writes (a few of them nest into "
                        "billions of values); accepted: the record Hydra wrote")
    return text
